//! Key constraints sent with `SSH_AGENTC_ADD_ID_CONSTRAINED`.

use crate::{Cursor, Error, Writer};

const LIFETIME: u8 = 1;
const CONFIRM: u8 = 2;
const MAXSIGN: u8 = 3;
const EXTENSION: u8 = 255;

/// The name of OpenSSH's destination-constraint extension (`ssh-add -h`).
pub const RESTRICT_DESTINATION: &str = "restrict-destination-v00@openssh.com";

/// Destination constraints beyond this count are refused (OpenSSH's `AGENT_MAX_DEST_CONSTRAINTS`).
pub const MAX_DESTINATION_CONSTRAINTS: usize = 1024;
/// A user pattern longer than this is refused (OpenSSH's `AGENT_USER_CONSTRAINT_MAX_LEN`).
pub const MAX_USER_PATTERN_LEN: usize = 256;

/// One constraint on an added key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// The key is removed after this many seconds.
    Lifetime(u32),
    /// Every use must be confirmed by the user.
    Confirm,
    /// At most this many signatures (XMSS only in OpenSSH; kept for decoding).
    MaxSign(u32),
    /// `restrict-destination-v00@openssh.com`: the hops through which the key may be used.
    RestrictDestination(Vec<DestinationConstraint>),
}

/// One permitted hop: from a host (or the origin) to a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationConstraint {
    /// Where the hop starts. An empty hostname and no keys means the origin (this machine).
    pub from: Hop,
    /// Where the hop ends.
    pub to: Hop,
}

/// One end of a hop: a user pattern (only meaningful on `to`), a name and its host keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hop {
    /// User name pattern; empty means any user.
    pub user: String,
    /// Host name, for display and certificate checks; empty means the origin.
    pub hostname: String,
    /// The host keys (or CA keys) that identify the host.
    pub keys: Vec<HopKey>,
}

/// A host key, or a certificate authority key, of a hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopKey {
    /// The public key blob.
    pub key_blob: Vec<u8>,
    /// Whether the key is a CA that signs the host's certificate.
    pub is_ca: bool,
}

impl Constraint {
    /// Decode the constraints that follow a key in `ADD_ID_CONSTRAINED`, until the end.
    /// Repeated constraints are refused, as OpenSSH does.
    pub fn decode_all(cur: &mut Cursor<'_>) -> Result<Vec<Constraint>, Error> {
        let mut out: Vec<Constraint> = Vec::new();
        while !cur.is_empty() {
            let c = Self::decode(cur)?;
            if out
                .iter()
                .any(|o| std::mem::discriminant(o) == std::mem::discriminant(&c))
            {
                return Err(Error::Invalid("repeated constraint"));
            }
            out.push(c);
        }
        Ok(out)
    }

    fn decode(cur: &mut Cursor<'_>) -> Result<Constraint, Error> {
        match cur.u8()? {
            LIFETIME => Ok(Constraint::Lifetime(cur.u32()?)),
            CONFIRM => Ok(Constraint::Confirm),
            MAXSIGN => Ok(Constraint::MaxSign(cur.u32()?)),
            EXTENSION => {
                let name = cur.utf8("constraint extension name")?;
                if name != RESTRICT_DESTINATION {
                    return Err(Error::UnsupportedConstraint(name.to_owned()));
                }
                let mut outer = Cursor::new(cur.string()?);
                let mut list = Vec::new();
                while !outer.is_empty() {
                    if list.len() >= MAX_DESTINATION_CONSTRAINTS {
                        return Err(Error::Invalid("too many destination constraints"));
                    }
                    list.push(DestinationConstraint::decode(&mut outer)?);
                }
                Ok(Constraint::RestrictDestination(list))
            }
            other => Err(Error::UnsupportedConstraint(format!("type {other}"))),
        }
    }

    /// Encode one constraint.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Constraint::Lifetime(secs) => {
                w.u8(LIFETIME).u32(*secs);
            }
            Constraint::Confirm => {
                w.u8(CONFIRM);
            }
            Constraint::MaxSign(n) => {
                w.u8(MAXSIGN).u32(*n);
            }
            Constraint::RestrictDestination(list) => {
                let mut outer = Writer::new();
                for dc in list {
                    dc.encode(&mut outer);
                }
                w.u8(EXTENSION)
                    .string(RESTRICT_DESTINATION)
                    .string(outer.as_bytes());
            }
        }
    }
}

impl DestinationConstraint {
    fn decode(cur: &mut Cursor<'_>) -> Result<Self, Error> {
        let mut body = Cursor::new(cur.string()?);
        let from = Hop::decode(&mut Cursor::new(body.string()?))?;
        let to = Hop::decode(&mut Cursor::new(body.string()?))?;
        if !body.string()?.is_empty() {
            return Err(Error::Invalid("destination constraint extensions"));
        }
        body.finish()?;
        // The consistency rules of OpenSSH's parse_dest_constraint().
        if from.hostname.is_empty() != from.keys.is_empty() || !from.user.is_empty() {
            return Err(Error::Invalid("inconsistent \"from\" specification"));
        }
        if to.hostname.is_empty() || to.keys.is_empty() {
            return Err(Error::Invalid("incomplete \"to\" specification"));
        }
        Ok(Self { from, to })
    }

    fn encode(&self, w: &mut Writer) {
        let mut body = Writer::new();
        body.string(self.from.encode())
            .string(self.to.encode())
            .string([]);
        w.string(body.as_bytes());
    }

    /// Whether `from` is the origin (the machine the agent runs on).
    pub fn from_origin(&self) -> bool {
        self.from.hostname.is_empty()
    }
}

impl Hop {
    fn decode(cur: &mut Cursor<'_>) -> Result<Self, Error> {
        let user = cur.utf8("hop user")?.to_owned();
        if user.len() > MAX_USER_PATTERN_LEN {
            return Err(Error::Invalid("user match pattern too long"));
        }
        let hostname = cur.utf8("hop hostname")?.to_owned();
        if !cur.string()?.is_empty() {
            return Err(Error::Invalid("hop extensions"));
        }
        let mut keys = Vec::new();
        while !cur.is_empty() {
            let key_blob = cur.string()?.to_vec();
            let is_ca = cur.bool()?;
            keys.push(HopKey { key_blob, is_ca });
        }
        Ok(Self {
            user,
            hostname,
            keys,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.string(&self.user).string(&self.hostname).string([]);
        for k in &self.keys {
            w.string(&k.key_blob).u8(u8::from(k.is_ca));
        }
        w.into_bytes()
    }
}
