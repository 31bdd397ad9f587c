//! The option store and the per-keyword parsing of `readconf.c`'s `process_config_line`:
//! "first obtained value wins", the keywords that accumulate, and the exact validation that
//! makes `ssh` reject a file.

use std::collections::HashMap;

use crate::algorithms::{self, Family};
use crate::expand;
use crate::lexer::argv_split;
use crate::pattern::match_pattern;
use crate::{Location, Trace, TraceOutcome};

/// Listen/connect "port" meaning "a Unix socket path" (`PORT_STREAMLOCAL`).
pub(crate) const PORT_STREAMLOCAL: i32 = -2;

/// One port forwarding as OpenSSH stores it (`struct Forward`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Listen address, if one was given.
    pub listen_host: Option<String>,
    /// Listen port, or `-2` for a socket path.
    pub listen_port: i32,
    /// Listen socket path.
    pub listen_path: Option<String>,
    /// Destination host (`socks` for dynamic forwards).
    pub connect_host: Option<String>,
    /// Destination port, or `-2` for a socket path.
    pub connect_port: i32,
    /// Destination socket path.
    pub connect_path: Option<String>,
}

impl Forward {
    pub(crate) fn is_socks(&self) -> bool {
        self.connect_host.as_deref() == Some("socks")
    }

    /// The `ssh -G` rendering of the listen side.
    pub(crate) fn fmt_listen(&self) -> String {
        if self.listen_port == PORT_STREAMLOCAL {
            self.listen_path.clone().unwrap_or_default()
        } else if let Some(h) = &self.listen_host {
            format!("[{h}]:{}", self.listen_port)
        } else {
            self.listen_port.to_string()
        }
    }

    /// The `ssh -G` rendering of the connect side.
    pub(crate) fn fmt_connect(&self) -> String {
        if self.connect_port == PORT_STREAMLOCAL {
            self.connect_path.clone().unwrap_or_default()
        } else if let Some(h) = &self.connect_host {
            format!("[{h}]:{}", self.connect_port)
        } else {
            self.connect_port.to_string()
        }
    }
}

/// The option values, mirroring OpenSSH's `Options`; `None` is "not yet set".
#[derive(Debug, Clone, Default)]
pub(crate) struct Values {
    pub forward_agent: Option<bool>,
    pub forward_agent_sock_path: Option<String>,
    pub flags: HashMap<&'static str, bool>,
    pub multistate: HashMap<&'static str, &'static str>,
    pub ints: HashMap<&'static str, i64>,
    pub strings: HashMap<&'static str, String>,
    pub streamlocal_bind_mask: Option<u32>,
    pub identity_files: Vec<(String, bool)>,
    pub certificate_files: Vec<(String, bool)>,
    pub system_hostfiles: Vec<String>,
    pub user_hostfiles: Vec<String>,
    pub local_forwards: Vec<Forward>,
    pub remote_forwards: Vec<Forward>,
    pub permitted_remote_opens: Vec<String>,
    pub log_level: Option<&'static str>,
    pub log_facility: Option<&'static str>,
    pub log_verbose: Vec<String>,
    pub send_env: Vec<String>,
    pub setenv: Vec<String>,
    pub control_persist: Option<(bool, i64)>,
    pub add_keys_to_agent: Option<(&'static str, i64)>,
    pub escape_char: Option<EscapeChar>,
    pub tun_device: Option<(i64, i64)>,
    pub ip_qos: Option<(i64, i64)>,
    pub rekey_limit: Option<i64>,
    pub rekey_interval: Option<i64>,
    pub canonical_domains: Vec<String>,
    pub permitted_cnames: Vec<(String, String)>,
    pub proxy_command: Option<String>,
    pub jump_user: Option<String>,
    pub jump_host: Option<String>,
    pub jump_port: i64,
    pub jump_extra: Option<String>,
    pub ignored_unknown: Option<String>,
    pub port: Option<i64>,
}

/// The escape character setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EscapeChar {
    None,
    Char(u8),
}

/// What a keyword does, once the keyword table has been consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Host,
    Match,
    Include,
    IgnoreUnknown,
    /// Silently ignored (`Protocol`, deprecated names).
    Ignore,
    /// Ignored with a warning (options this build does not support).
    Unsupported,
    /// A value keyword: its canonical (printed) name.
    Value(&'static str),
}

/// The keyword table of Debian's OpenSSH 9.2 `readconf.c` (with the GSSAPI key exchange and
/// keepalive patches): lower-case name to kind.
pub(crate) fn lookup_keyword(name: &str) -> Option<Kind> {
    use Kind::{Host, Ignore, Include, Match, Unsupported, Value};
    let kind = match name {
        "host" => Host,
        "match" => Match,
        "include" => Include,
        "ignoreunknown" => Kind::IgnoreUnknown,
        "protocol"
        | "cipher"
        | "fallbacktorsh"
        | "globalknownhostsfile2"
        | "rhostsauthentication"
        | "userknownhostsfile2"
        | "useroaming"
        | "usersh"
        | "useprivilegedport"
        | "useblacklistedkeys"
        | "setuptimeout" => Ignore,
        "afstokenpassing"
        | "kerberosauthentication"
        | "kerberostgtpassing"
        | "rsaauthentication"
        | "rhostsrsaauthentication"
        | "compressionlevel" => Unsupported,
        "challengeresponseauthentication" | "skeyauthentication" | "tisauthentication" => {
            Value("kbdinteractiveauthentication")
        }
        "dsaauthentication" => Value("pubkeyauthentication"),
        "identityfile2" => Value("identityfile"),
        "keepalive" => Value("tcpkeepalive"),
        "hostbasedkeytypes" => Value("hostbasedacceptedalgorithms"),
        "pubkeyacceptedkeytypes" => Value("pubkeyacceptedalgorithms"),
        "smartcarddevice" => Value("pkcs11provider"),
        "protocolkeepalives" => Value("serveraliveinterval"),
        _ => Value(VALUE_KEYWORDS.iter().find(|k| **k == name)?),
    };
    Some(kind)
}

const VALUE_KEYWORDS: &[&str] = &[
    "gssapiauthentication",
    "gssapikeyexchange",
    "gssapidelegatecredentials",
    "gssapitrustdns",
    "gssapiclientidentity",
    "gssapiserveridentity",
    "gssapirenewalforcesrekey",
    "gssapikexalgorithms",
    "pkcs11provider",
    "forwardagent",
    "forwardx11",
    "forwardx11trusted",
    "forwardx11timeout",
    "exitonforwardfailure",
    "xauthlocation",
    "gatewayports",
    "passwordauthentication",
    "kbdinteractiveauthentication",
    "kbdinteractivedevices",
    "pubkeyauthentication",
    "hostbasedauthentication",
    "identityfile",
    "identitiesonly",
    "certificatefile",
    "addkeystoagent",
    "identityagent",
    "hostname",
    "hostkeyalias",
    "proxycommand",
    "port",
    "ciphers",
    "macs",
    "remoteforward",
    "localforward",
    "permitremoteopen",
    "user",
    "escapechar",
    "globalknownhostsfile",
    "userknownhostsfile",
    "connectionattempts",
    "batchmode",
    "checkhostip",
    "stricthostkeychecking",
    "compression",
    "tcpkeepalive",
    "numberofpasswordprompts",
    "syslogfacility",
    "loglevel",
    "logverbose",
    "dynamicforward",
    "preferredauthentications",
    "hostkeyalgorithms",
    "casignaturealgorithms",
    "bindaddress",
    "bindinterface",
    "clearallforwardings",
    "enablesshkeysign",
    "verifyhostkeydns",
    "nohostauthenticationforlocalhost",
    "rekeylimit",
    "connecttimeout",
    "addressfamily",
    "serveraliveinterval",
    "serveralivecountmax",
    "sendenv",
    "setenv",
    "controlpath",
    "controlmaster",
    "controlpersist",
    "hashknownhosts",
    "tunnel",
    "tunneldevice",
    "localcommand",
    "permitlocalcommand",
    "remotecommand",
    "visualhostkey",
    "kexalgorithms",
    "ipqos",
    "requesttty",
    "sessiontype",
    "stdinnull",
    "forkafterauthentication",
    "proxyusefdpass",
    "canonicaldomains",
    "canonicalizefallbacklocal",
    "canonicalizehostname",
    "canonicalizemaxdots",
    "canonicalizepermittedcnames",
    "streamlocalbindmask",
    "streamlocalbindunlink",
    "revokedhostkeys",
    "fingerprinthash",
    "updatehostkeys",
    "hostbasedacceptedalgorithms",
    "pubkeyacceptedalgorithms",
    "proxyjump",
    "securitykeyprovider",
    "knownhostscommand",
    "requiredrsasize",
    "enableescapecommandline",
];

/// Plain yes/no keywords (`parse_flag`).
const FLAG_KEYWORDS: &[&str] = &[
    "forwardx11",
    "forwardx11trusted",
    "gatewayports",
    "exitonforwardfailure",
    "passwordauthentication",
    "kbdinteractiveauthentication",
    "hostbasedauthentication",
    "gssapiauthentication",
    "gssapidelegatecredentials",
    "gssapikeyexchange",
    "gssapitrustdns",
    "gssapirenewalforcesrekey",
    "batchmode",
    "checkhostip",
    "tcpkeepalive",
    "nohostauthenticationforlocalhost",
    "clearallforwardings",
    "enablesshkeysign",
    "identitiesonly",
    "hashknownhosts",
    "permitlocalcommand",
    "visualhostkey",
    "stdinnull",
    "forkafterauthentication",
    "proxyusefdpass",
    "canonicalizefallbacklocal",
    "streamlocalbindunlink",
    "enableescapecommandline",
];

/// Multi-state keywords: accepted words and the word `ssh -G` prints for each (the first
/// word in OpenSSH's table with the same value).
fn multistate_table(kw: &str) -> Option<&'static [(&'static str, &'static str)]> {
    const YESNOASK: &[(&str, &str)] = &[
        ("true", "true"),
        ("false", "false"),
        ("yes", "true"),
        ("no", "false"),
        ("ask", "ask"),
    ];
    Some(match kw {
        "verifyhostkeydns" | "updatehostkeys" => YESNOASK,
        "stricthostkeychecking" => &[
            ("true", "true"),
            ("false", "false"),
            ("yes", "true"),
            ("no", "false"),
            ("ask", "ask"),
            ("off", "false"),
            ("accept-new", "accept-new"),
        ],
        "controlmaster" => &[
            ("true", "true"),
            ("yes", "true"),
            ("false", "false"),
            ("no", "false"),
            ("auto", "auto"),
            ("ask", "ask"),
            ("autoask", "autoask"),
        ],
        "tunnel" => &[
            ("ethernet", "ethernet"),
            ("point-to-point", "point-to-point"),
            // SSH_TUNMODE_DEFAULT is SSH_TUNMODE_POINTOPOINT, printed by its first name.
            ("true", "point-to-point"),
            ("yes", "point-to-point"),
            ("false", "false"),
            ("no", "false"),
        ],
        "requesttty" => &[
            ("true", "true"),
            ("yes", "true"),
            ("false", "false"),
            ("no", "false"),
            ("force", "force"),
            ("auto", "auto"),
        ],
        "sessiontype" => &[
            ("none", "none"),
            ("subsystem", "subsystem"),
            ("default", "default"),
        ],
        "canonicalizehostname" => &[
            ("true", "true"),
            ("false", "false"),
            ("yes", "true"),
            ("no", "false"),
            ("always", "always"),
        ],
        "pubkeyauthentication" => &[
            ("true", "true"),
            ("false", "false"),
            ("yes", "true"),
            ("no", "false"),
            ("unbound", "unbound"),
            ("host-bound", "host-bound"),
        ],
        "compression" => &[("yes", "yes"), ("no", "no")],
        "addressfamily" => &[("inet", "inet"), ("inet6", "inet6"), ("any", "any")],
        _ => return None,
    })
}

const ADDKEYS: &[(&str, &str)] = &[
    ("true", "true"),
    ("false", "false"),
    ("yes", "true"),
    ("no", "false"),
    ("ask", "ask"),
    ("confirm", "confirm"),
];

fn lookup_multi(arg: &str, table: &[(&str, &'static str)]) -> Option<&'static str> {
    table
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(arg))
        .map(|(_, v)| *v)
}

fn parse_flag(arg: &str) -> Option<bool> {
    match arg.to_ascii_lowercase().as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

/// `convtime`: `1h30m`, `90`, `2d`; `None` if invalid.
pub(crate) fn convtime(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let secs: i64 = s.get(start..i)?.parse().ok()?;
        let mult = match b.get(i) {
            None => 1,
            Some(c) => {
                i += 1;
                match c {
                    b's' | b'S' => 1,
                    b'm' | b'M' => 60,
                    b'h' | b'H' => 3600,
                    b'd' | b'D' => 86400,
                    b'w' | b'W' => 604_800,
                    _ => return None,
                }
            }
        };
        let v = secs.checked_mul(mult)?;
        total = total.checked_add(v)?;
        if total > i64::from(i32::MAX) {
            return None;
        }
    }
    Some(total)
}

/// `atoi_err`: a non-negative `int`.
fn parse_int(s: &str) -> Option<i64> {
    let t = s.strip_prefix('+').unwrap_or(s);
    if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    t.parse::<i64>().ok().filter(|v| *v <= i64::from(i32::MAX))
}

/// Look a TCP service name up in `/etc/services`.
fn service_port(name: &str) -> Option<i64> {
    let text = std::fs::read_to_string("/etc/services").ok()?;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut parts = line.split_whitespace();
        let (Some(service), Some(port_proto)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some((port, proto)) = port_proto.split_once('/') else {
            continue;
        };
        if proto != "tcp" {
            continue;
        }
        if service == name || parts.any(|alias| alias == name) {
            return port.parse().ok();
        }
    }
    None
}

/// `a2port`: 0..=65535 or a service name; `None` ("-1") when invalid.
pub(crate) fn a2port(s: &str) -> Option<i64> {
    if let Some(v) = parse_int(s) {
        return (v <= 65535).then_some(v);
    }
    if s.starts_with('-')
        && s.get(1..)
            .is_some_and(|r| r.bytes().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    service_port(s)
}

const TUNID_ANY: i64 = 0x7fff_ffff;

fn a2tun_one(s: &str) -> Option<i64> {
    if s.eq_ignore_ascii_case("any") {
        return Some(TUNID_ANY);
    }
    parse_int(s).filter(|v| *v <= TUNID_ANY - 2)
}

fn a2tun(s: &str) -> Option<(i64, i64)> {
    match s.split_once(':') {
        Some((l, r)) => Some((a2tun_one(l)?, a2tun_one(r)?)),
        None => Some((a2tun_one(s)?, TUNID_ANY)),
    }
}

const IPQOS: &[(&str, i64)] = &[
    ("none", i32::MAX as i64),
    ("af11", 0x28),
    ("af12", 0x30),
    ("af13", 0x38),
    ("af21", 0x48),
    ("af22", 0x50),
    ("af23", 0x58),
    ("af31", 0x68),
    ("af32", 0x70),
    ("af33", 0x78),
    ("af41", 0x88),
    ("af42", 0x90),
    ("af43", 0x98),
    ("cs0", 0x00),
    ("cs1", 0x20),
    ("cs2", 0x40),
    ("cs3", 0x60),
    ("cs4", 0x80),
    ("cs5", 0xa0),
    ("cs6", 0xc0),
    ("cs7", 0xe0),
    ("ef", 0xb8),
    ("le", 0x01),
    ("lowdelay", 0x10),
    ("throughput", 0x08),
    ("reliability", 0x04),
];

/// `strtol(s, &end, base)` requiring the whole string to be consumed.
fn strtol_full(s: &str, base: u32) -> Option<i64> {
    let t = s.trim_start();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (base, digits) = if base == 0 {
        if let Some(r) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            (16, r)
        } else if t.len() > 1 && t.starts_with('0') {
            (8, t.get(1..).unwrap_or_default())
        } else {
            (10, t)
        }
    } else {
        (base, t)
    };
    if digits.is_empty() {
        return None;
    }
    let v = i64::from_str_radix(digits, base).ok()?;
    Some(if neg { -v } else { v })
}

fn parse_ipqos(s: &str) -> Option<i64> {
    if let Some((_, v)) = IPQOS.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
        return Some(*v);
    }
    strtol_full(s, 0).filter(|v| (0..=255).contains(v))
}

pub(crate) fn iptos2str(v: i64) -> String {
    IPQOS
        .iter()
        .find(|(_, x)| *x == v)
        .map_or_else(|| format!("0x{v:02x}"), |(n, _)| (*n).to_owned())
}

/// `scan_scaled`: `1G`, `512M`, `1.5K`, plain bytes.
fn scan_scaled(s: &str) -> Option<i64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let shift = match suffix {
        "" | "b" | "B" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        "t" | "T" => 40,
        "p" | "P" => 50,
        "e" | "E" => 60,
        _ => return None,
    };
    let (whole, frac) = match num.split_once('.') {
        Some((w, f)) => (w, f),
        None => (num, ""),
    };
    let whole: i64 = whole.parse().ok()?;
    let scale = 1i64.checked_shl(shift)?;
    let mut v = whole.checked_mul(scale)?;
    if !frac.is_empty() {
        if shift == 0 || frac.len() > 1 || !frac.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let f: i64 = frac.parse().ok()?;
        v = v.checked_add(scale / 10 * f)?;
    }
    (v >= 0).then_some(v)
}

fn log_level(s: &str) -> Option<&'static str> {
    const LEVELS: &[(&str, &str)] = &[
        ("QUIET", "QUIET"),
        ("FATAL", "FATAL"),
        ("ERROR", "ERROR"),
        ("INFO", "INFO"),
        ("VERBOSE", "VERBOSE"),
        ("DEBUG", "DEBUG"),
        ("DEBUG1", "DEBUG"),
        ("DEBUG2", "DEBUG2"),
        ("DEBUG3", "DEBUG3"),
    ];
    lookup_multi(s, LEVELS)
}

fn log_facility(s: &str) -> Option<&'static str> {
    const FACILITIES: &[(&str, &str)] = &[
        ("DAEMON", "DAEMON"),
        ("USER", "USER"),
        ("AUTH", "AUTH"),
        ("AUTHPRIV", "AUTHPRIV"),
        ("LOCAL0", "LOCAL0"),
        ("LOCAL1", "LOCAL1"),
        ("LOCAL2", "LOCAL2"),
        ("LOCAL3", "LOCAL3"),
        ("LOCAL4", "LOCAL4"),
        ("LOCAL5", "LOCAL5"),
        ("LOCAL6", "LOCAL6"),
        ("LOCAL7", "LOCAL7"),
    ];
    lookup_multi(s, FACILITIES)
}

fn valid_env_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// `valid_domain(name, makelower=1)`: the lower-cased name without a trailing dot.
fn valid_domain(s: &str) -> Result<String, String> {
    let first = s.bytes().next().ok_or("empty domain name")?;
    if !first.is_ascii_alphanumeric() {
        return Err(format!("domain name \"{s}\" starts with invalid character"));
    }
    if s.contains("..") {
        return Err(format!(
            "domain name \"{s}\" contains consecutive separators"
        ));
    }
    if !s
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
    {
        return Err(format!("domain name \"{s}\" contains invalid characters"));
    }
    let lower = s.to_ascii_lowercase();
    Ok(lower.strip_suffix('.').unwrap_or(&lower).to_owned())
}

/// One field of a forwarding spec (`parse_fwd_field`).
fn fwd_fields(spec: &str) -> Option<Vec<(String, bool)>> {
    let mut out = Vec::new();
    let b = spec.as_bytes();
    let mut i = 0;
    while out.len() < 4 {
        if i >= b.len() {
            return Some(out);
        }
        if b.get(i) == Some(&b'[') {
            let rel = spec.get(i + 1..)?.find(']')?;
            let field = spec.get(i + 1..i + 1 + rel)?;
            let after = i + 1 + rel + 1;
            match b.get(after) {
                None => i = after,
                Some(b':') => i = after + 1,
                Some(_) => return None,
            }
            out.push((field.to_owned(), field.contains('/')));
            if after >= b.len() {
                return Some(out);
            }
            continue;
        }
        let mut field = Vec::new();
        let mut ispath = false;
        let mut ended_colon = false;
        while let Some(&c) = b.get(i) {
            match c {
                b'\\' => {
                    i += 1;
                    let &n = b.get(i)?;
                    field.push(n);
                    if n == b'/' {
                        ispath = true;
                    }
                    if n == b':' {
                        // An escaped colon is literal.
                    }
                }
                b'/' => {
                    ispath = true;
                    field.push(c);
                }
                b':' => {
                    i += 1;
                    ended_colon = true;
                    break;
                }
                _ => field.push(c),
            }
            i += 1;
        }
        out.push((String::from_utf8_lossy(&field).into_owned(), ispath));
        if !ended_colon {
            return Some(out);
        }
    }
    // Four fields parsed and more remain: trailing garbage.
    if i < b.len() { None } else { Some(out) }
}

/// `parse_forward`: `None` on a bad specification.
#[allow(
    clippy::many_single_char_names,
    reason = "fields named as in parse_forward"
)]
pub(crate) fn parse_forward(
    spec: &str,
    dynamic: bool,
    remote: bool,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Option<Forward> {
    let expanded = expand::expand(spec, None, true, getenv).ok()?;
    let trimmed = expanded.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let fields = fwd_fields(trimmed)?;
    let port = |s: &str| a2port(s).map_or(-1, |p| i32::try_from(p).unwrap_or(-1));
    let mut f = Forward {
        listen_host: None,
        listen_port: 0,
        listen_path: None,
        connect_host: None,
        connect_port: 0,
        connect_path: None,
    };
    let get = |i: usize| fields.get(i).cloned().unwrap_or_default();
    let n = fields.len();
    match n {
        1 => {
            let (a, ap) = get(0);
            if ap {
                f.listen_path = Some(a);
                f.listen_port = PORT_STREAMLOCAL;
            } else {
                f.listen_port = port(&a);
            }
            f.connect_host = Some("socks".into());
        }
        2 => {
            let ((a, ap), (b, bp)) = (get(0), get(1));
            if ap && bp {
                f.listen_path = Some(a);
                f.listen_port = PORT_STREAMLOCAL;
                f.connect_path = Some(b);
                f.connect_port = PORT_STREAMLOCAL;
            } else if bp {
                f.listen_port = port(&a);
                f.connect_path = Some(b);
                f.connect_port = PORT_STREAMLOCAL;
            } else {
                f.listen_host = Some(a);
                f.listen_port = port(&b);
                f.connect_host = Some("socks".into());
            }
        }
        3 => {
            let ((a, ap), (b, _), (c, cp)) = (get(0), get(1), get(2));
            if ap {
                f.listen_path = Some(a);
                f.listen_port = PORT_STREAMLOCAL;
                f.connect_host = Some(b);
                f.connect_port = port(&c);
            } else if cp {
                f.listen_host = Some(a);
                f.listen_port = port(&b);
                f.connect_path = Some(c);
                f.connect_port = PORT_STREAMLOCAL;
            } else {
                f.listen_port = port(&a);
                f.connect_host = Some(b);
                f.connect_port = port(&c);
            }
        }
        4 => {
            f.listen_host = Some(get(0).0);
            f.listen_port = port(&get(1).0);
            f.connect_host = Some(get(2).0);
            f.connect_port = port(&get(3).0);
        }
        _ => return None,
    }
    if dynamic {
        if !(n == 1 || n == 2) {
            return None;
        }
    } else {
        if !(n == 3 || n == 4) && f.connect_path.is_none() && f.listen_path.is_none() {
            return None;
        }
        if f.connect_port <= 0 && f.connect_path.is_none() {
            return None;
        }
    }
    if (f.listen_port < 0 && f.listen_path.is_none()) || (!remote && f.listen_port == 0) {
        return None;
    }
    Some(f)
}

/// `parse_user_host_port`: `[user@]host[:port]`.
fn parse_user_host_port(s: &str) -> Option<(Option<String>, String, i64)> {
    let (user, rest) = match s.rfind('@') {
        Some(i) => {
            let u = s.get(..i)?;
            if u.is_empty() {
                return None;
            }
            (Some(u.to_owned()), s.get(i + 1..)?)
        }
        None => (None, s),
    };
    let (host, port) = hpdelim(rest)?;
    if host.is_empty() {
        return None;
    }
    let host = cleanhostname(&host);
    let port = match port {
        Some(p) if !p.is_empty() => {
            let v = a2port(&p)?;
            if v <= 0 {
                return None;
            }
            v
        }
        _ => -1,
    };
    Some((user, host, port))
}

/// `hpdelim`: host and the remainder after a `:` (`/` is rejected).
fn hpdelim(s: &str) -> Option<(String, Option<String>)> {
    let end = if s.starts_with('[') {
        s.find(']')? + 1
    } else {
        s.find([':', '/']).unwrap_or(s.len())
    };
    let host = s.get(..end)?.to_owned();
    match s.get(end..end + 1) {
        None | Some("") => Some((host, None)),
        Some(":") => Some((host, Some(s.get(end + 1..)?.to_owned()))),
        _ => None,
    }
}

fn cleanhostname(h: &str) -> String {
    h.strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h)
        .to_owned()
}

/// `parse_uri("ssh", ...)`: `Some(None)` when not a URI, `Some(Some(..))` parsed, `None` bad.
#[allow(clippy::option_option, reason = "mirrors OpenSSH's tri-state return")]
pub(crate) fn parse_ssh_uri(s: &str) -> Option<Option<(Option<String>, String, i64)>> {
    let Some(rest) = s.strip_prefix("ssh://") else {
        return Some(None);
    };
    let (user, rest) = match rest.find('@') {
        Some(i) => {
            let u = rest.get(..i)?;
            let u = u.split(';').next().unwrap_or_default();
            if u.is_empty() {
                return None;
            }
            (Some(urldecode(u)?), rest.get(i + 1..)?)
        }
        None => (None, rest),
    };
    let end = if rest.starts_with('[') {
        rest.find(']')? + 1
    } else {
        rest.find([':', '/']).unwrap_or(rest.len())
    };
    let host = cleanhostname(rest.get(..end)?);
    if host.is_empty() || valid_domain(&host).is_err() {
        return None;
    }
    let tail = rest.get(end..).unwrap_or_default();
    let mut port = -1;
    let mut path_present = false;
    if let Some(p) = tail.strip_prefix(':') {
        let (num, path) = match p.split_once('/') {
            Some((n, path)) => (n, Some(path)),
            None => (p, None),
        };
        let v = a2port(num)?;
        if v <= 0 {
            return None;
        }
        port = v;
        path_present = path.is_some_and(|x| !x.is_empty());
    } else if let Some(p) = tail.strip_prefix('/') {
        path_present = !p.is_empty();
    }
    if path_present {
        return None;
    }
    Some(Some((user, host, port)))
}

fn urldecode(s: &str) -> Option<String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            _ => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Record of which directive set each keyword first, for `check`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Recorder {
    pub origins: HashMap<&'static str, Location>,
    pub trace: Vec<Trace>,
}

impl Recorder {
    /// Decide whether a first-wins keyword takes this value, and record the outcome.
    fn first(&mut self, kw: &'static str, loc: &Location, active: bool, already: bool) -> bool {
        let outcome = if !active {
            TraceOutcome::Inactive
        } else if already {
            TraceOutcome::Shadowed(self.origins.get(kw).cloned())
        } else {
            self.origins.insert(kw, loc.clone());
            TraceOutcome::Set
        };
        let take = outcome == TraceOutcome::Set;
        self.trace.push(Trace {
            keyword: kw,
            location: loc.clone(),
            outcome,
        });
        take
    }

    /// Record an accumulating keyword.
    fn accumulate(&mut self, kw: &'static str, loc: &Location, active: bool) -> bool {
        if active {
            self.origins.entry(kw).or_insert_with(|| loc.clone());
        }
        self.trace.push(Trace {
            keyword: kw,
            location: loc.clone(),
            outcome: if active {
                TraceOutcome::Set
            } else {
                TraceOutcome::Inactive
            },
        });
        active
    }
}

/// Inputs the value parsers need from the outside world.
pub(crate) struct ParseEnv<'a> {
    pub getenv: &'a dyn Fn(&str) -> Option<String>,
    pub user_config: bool,
}

/// The options being built plus their provenance.
#[derive(Debug, Default, Clone)]
pub(crate) struct Options {
    pub v: Values,
    pub rec: Recorder,
}

type Res = Result<(), String>;

fn missing() -> String {
    "missing argument".to_owned()
}

impl Options {
    /// Apply one value keyword. `rest` is the raw text after the keyword; errors are what
    /// `ssh` reports (and then refuses the file).
    #[allow(clippy::too_many_lines)]
    pub(crate) fn apply(
        &mut self,
        kw: &'static str,
        rest: &str,
        loc: &Location,
        active: bool,
        env: &ParseEnv<'_>,
    ) -> Res {
        let args = argv_split(rest).ok_or_else(|| "invalid quotes".to_owned())?;
        let mut av = args.iter().map(String::as_str);
        let mut consumed_all = false;
        let first = av.next();
        let need = |a: Option<&str>| -> Result<String, String> {
            match a {
                Some(s) if !s.is_empty() => Ok(s.to_owned()),
                _ => Err(missing()),
            }
        };
        let v = &mut self.v;
        let rec = &mut self.rec;
        if FLAG_KEYWORDS.contains(&kw) {
            let a = first.unwrap_or_default();
            let val = parse_flag(a).ok_or_else(|| format!("unsupported option \"{a}\""))?;
            if rec.first(kw, loc, active, v.flags.contains_key(kw)) {
                v.flags.insert(kw, val);
            }
        } else if let Some(table) = multistate_table(kw) {
            let a = need(first)?;
            let val =
                lookup_multi(&a, table).ok_or_else(|| format!("unsupported option \"{a}\""))?;
            if rec.first(kw, loc, active, v.multistate.contains_key(kw)) {
                v.multistate.insert(kw, val);
            }
        } else {
            match kw {
                "connecttimeout" | "forwardx11timeout" | "serveraliveinterval" => {
                    let a = first
                        .filter(|s| !s.is_empty())
                        .ok_or("missing time value")?;
                    let val = if a == "none" {
                        -1
                    } else {
                        convtime(a).ok_or("invalid time value")?
                    };
                    if val != -1 && rec.first(kw, loc, active, v.ints.contains_key(kw)) {
                        v.ints.insert(kw, val);
                    }
                }
                "forwardagent" => {
                    let a = need(first)?;
                    if let Some(val) = parse_flag(&a) {
                        if rec.first(kw, loc, active, v.forward_agent.is_some()) {
                            v.forward_agent = Some(val);
                        }
                    } else {
                        validate_agent_path(&a, env)?;
                        let take = rec.first(kw, loc, active, v.forward_agent.is_some());
                        if take {
                            v.forward_agent = Some(true);
                        }
                        if active && v.forward_agent_sock_path.is_none() {
                            v.forward_agent_sock_path = Some(a);
                        }
                    }
                }
                "numberofpasswordprompts"
                | "connectionattempts"
                | "serveralivecountmax"
                | "canonicalizemaxdots"
                | "requiredrsasize" => {
                    let a = first.unwrap_or_default();
                    let val = parse_int(a).ok_or_else(|| format!("integer value {a}"))?;
                    if rec.first(kw, loc, active, v.ints.contains_key(kw)) {
                        v.ints.insert(kw, val);
                    }
                }
                "rekeylimit" => {
                    let a = need(first)?;
                    let val = if a == "default" {
                        0
                    } else {
                        let x = scan_scaled(&a).ok_or_else(|| format!("Bad number '{a}'"))?;
                        if x != 0 && x < 16 {
                            return Err("RekeyLimit too small".into());
                        }
                        x
                    };
                    if rec.first(kw, loc, active, v.rekey_limit.is_some()) {
                        v.rekey_limit = Some(val);
                    }
                    if let Some(b) = av.next()
                        && b != "none"
                    {
                        let t = if b.is_empty() {
                            return Err("missing time value".into());
                        } else {
                            convtime(b).ok_or("invalid time value")?
                        };
                        if active && v.rekey_interval.is_none() {
                            v.rekey_interval = Some(t);
                        }
                    }
                }
                "identityfile" | "certificatefile" => {
                    let a = need(first)?;
                    if rec.accumulate(kw, loc, active) {
                        let list = if kw == "identityfile" {
                            &mut v.identity_files
                        } else {
                            &mut v.certificate_files
                        };
                        if list.len() >= 100 {
                            return Err("too many files specified (max 100)".into());
                        }
                        let entry = (a, env.user_config);
                        if !list.contains(&entry) {
                            list.push(entry);
                        }
                    }
                }
                "xauthlocation"
                | "user"
                | "hostname"
                | "hostkeyalias"
                | "preferredauthentications"
                | "bindaddress"
                | "bindinterface"
                | "pkcs11provider"
                | "securitykeyprovider"
                | "kbdinteractivedevices"
                | "controlpath"
                | "revokedhostkeys"
                | "gssapiclientidentity"
                | "gssapiserveridentity"
                | "gssapikexalgorithms" => {
                    let a = need(first)?;
                    if rec.first(kw, loc, active, v.strings.contains_key(kw)) {
                        v.strings.insert(kw, a);
                    }
                }
                "globalknownhostsfile" | "userknownhostsfile" => {
                    let list_empty = if kw == "globalknownhostsfile" {
                        v.system_hostfiles.is_empty()
                    } else {
                        v.user_hostfiles.is_empty()
                    };
                    let mut vals = Vec::new();
                    for (i, a) in args.iter().enumerate() {
                        if a.is_empty() {
                            return Err(format!("keyword {kw} empty argument"));
                        }
                        if a.eq_ignore_ascii_case("none") && (i > 0 || args.len() > 1) {
                            return Err(format!(
                                "keyword {kw} \"none\" argument must appear alone."
                            ));
                        }
                        vals.push(a.clone());
                    }
                    consumed_all = true;
                    if rec.first(kw, loc, active, !list_empty) {
                        if vals.len() > 16 {
                            return Err(format!("too many {kw} entries."));
                        }
                        if kw == "globalknownhostsfile" {
                            v.system_hostfiles = vals;
                        } else {
                            v.user_hostfiles = vals;
                        }
                    }
                }
                "proxycommand" | "localcommand" | "remotecommand" | "knownhostscommand" => {
                    let raw = rest
                        .trim_start_matches([' ', '\t', '\r', '\n', '='])
                        .to_owned();
                    consumed_all = true;
                    if kw == "proxycommand" {
                        let already = v.proxy_command.is_some() || v.jump_host.is_some();
                        if rec.first(kw, loc, active, already) {
                            v.proxy_command = Some(raw);
                        }
                    } else if rec.first(kw, loc, active, v.strings.contains_key(kw)) {
                        v.strings.insert(kw, raw);
                    }
                }
                "proxyjump" => {
                    let raw = rest.trim_start_matches([' ', '\t', '\r', '\n', '=']);
                    consumed_all = true;
                    let already = v.proxy_command.is_some() || v.jump_host.is_some();
                    let take = active && !already;
                    parse_jump(raw, v, take)
                        .ok_or_else(|| format!("Invalid ProxyJump \"{raw}\""))?;
                    rec.first(kw, loc, active, already);
                }
                "port" => {
                    let a = need(first)?;
                    let p = a2port(&a)
                        .filter(|p| *p > 0)
                        .ok_or(format!("Bad port '{a}'."))?;
                    if rec.first(kw, loc, active, v.port.is_some()) {
                        v.port = Some(p);
                    }
                }
                "ciphers"
                | "macs"
                | "kexalgorithms"
                | "hostkeyalgorithms"
                | "casignaturealgorithms"
                | "hostbasedacceptedalgorithms"
                | "pubkeyacceptedalgorithms" => {
                    let a = need(first)?;
                    let family = match kw {
                        "ciphers" => Family::Cipher,
                        "macs" => Family::Mac,
                        "kexalgorithms" => Family::Kex,
                        _ => Family::Key,
                    };
                    if !algorithms::valid(family, &a) {
                        return Err(format!("Bad {kw} list '{a}'."));
                    }
                    if rec.first(kw, loc, active, v.strings.contains_key(kw)) {
                        v.strings.insert(kw, a);
                    }
                }
                "loglevel" => {
                    let a = first.unwrap_or_default();
                    let l = log_level(a).ok_or_else(|| format!("unsupported log level '{a}'"))?;
                    if rec.first(kw, loc, active, v.log_level.is_some()) {
                        v.log_level = Some(l);
                    }
                }
                "syslogfacility" => {
                    let a = first.unwrap_or_default();
                    let l =
                        log_facility(a).ok_or_else(|| format!("unsupported log facility '{a}'"))?;
                    // OpenSSH sets this even inside a non-matching block.
                    if rec.first(kw, loc, true, v.log_facility.is_some()) {
                        v.log_facility = Some(l);
                    }
                }
                "logverbose" => {
                    let mut vals = Vec::new();
                    for (i, a) in args.iter().enumerate() {
                        if a.is_empty() {
                            return Err(format!("keyword {kw} empty argument"));
                        }
                        if a.eq_ignore_ascii_case("none") && (i > 0 || args.len() > 1) {
                            return Err(format!(
                                "keyword {kw} \"none\" argument must appear alone."
                            ));
                        }
                        vals.push(a.clone());
                    }
                    consumed_all = true;
                    // OpenSSH re-checks "still empty" per argument, so only the first
                    // argument of the first active line is kept.
                    vals.truncate(1);
                    if rec.first(kw, loc, active, !v.log_verbose.is_empty()) {
                        v.log_verbose = vals;
                    }
                }
                "localforward" | "remoteforward" | "dynamicforward" => {
                    let a = need(first)?;
                    let remote = kw == "remoteforward";
                    let mut dynamic = kw == "dynamicforward";
                    let mut spec = a.clone();
                    if !dynamic {
                        match av.next() {
                            Some(b) if !b.is_empty() => spec = format!("{a}:{b}"),
                            _ if remote => dynamic = true,
                            _ => return Err("Missing target argument.".into()),
                        }
                    }
                    if spec.len() >= 256 {
                        spec.truncate(255);
                    }
                    let fwd = parse_forward(&spec, dynamic, remote, env.getenv)
                        .ok_or("Bad forwarding specification.")?;
                    if rec.accumulate(kw, loc, active) {
                        let list = if remote {
                            &mut v.remote_forwards
                        } else {
                            &mut v.local_forwards
                        };
                        if !list.contains(&fwd) {
                            list.push(fwd);
                        }
                    }
                }
                "permitremoteopen" => {
                    let mut vals = Vec::new();
                    for (i, a) in args.iter().enumerate() {
                        if a.eq_ignore_ascii_case("none") || a.eq_ignore_ascii_case("any") {
                            if i > 0 || args.len() > 1 {
                                return Err(format!(
                                    "keyword {kw} \"{a}\" argument must appear alone."
                                ));
                            }
                        } else {
                            let (host, port) =
                                hpdelim(a).ok_or_else(|| format!("missing host in {kw}"))?;
                            let _ = cleanhostname(&host);
                            match port {
                                Some(p) if p == "*" || a2port(&p).is_some_and(|x| x > 0) => {}
                                _ => return Err(format!("bad port number in {kw}")),
                            }
                        }
                        vals.push(a.clone());
                    }
                    if vals.is_empty() {
                        return Err(format!("missing {kw} specification"));
                    }
                    consumed_all = true;
                    if rec.first(kw, loc, active, !v.permitted_remote_opens.is_empty()) {
                        v.permitted_remote_opens = vals;
                    }
                }
                "escapechar" => {
                    let a = need(first)?;
                    let b = a.as_bytes();
                    let val = if a == "none" {
                        EscapeChar::None
                    } else if b.len() == 1 {
                        EscapeChar::Char(b.first().copied().unwrap_or(b'~'))
                    } else if b.len() == 2
                        && b.first() == Some(&b'^')
                        && b.get(1).is_some_and(|c| (64..128).contains(c))
                    {
                        EscapeChar::Char(b.get(1).copied().unwrap_or(0) & 31)
                    } else {
                        return Err("Bad escape character.".into());
                    };
                    if rec.first(kw, loc, active, v.escape_char.is_some()) {
                        v.escape_char = Some(val);
                    }
                }
                "sendenv" => {
                    for a in &args {
                        if a.is_empty() || a.contains('=') {
                            return Err("Invalid environment name.".into());
                        }
                        if !active {
                            continue;
                        }
                        if let Some(pat) = a.strip_prefix('-') {
                            v.send_env.retain(|e| !match_pattern(e, pat));
                        } else {
                            v.send_env.push(a.clone());
                        }
                    }
                    consumed_all = true;
                    rec.accumulate(kw, loc, active);
                }
                "setenv" => {
                    let was_empty = v.setenv.is_empty();
                    let mut add = Vec::<String>::new();
                    for a in &args {
                        if !a.contains('=') {
                            return Err("Invalid SetEnv.".into());
                        }
                        let name = a.split('=').next().unwrap_or_default();
                        if !add
                            .iter()
                            .any(|e| e.split('=').next().unwrap_or_default() == name)
                        {
                            add.push(a.clone());
                        }
                    }
                    consumed_all = true;
                    if rec.first(kw, loc, active, !was_empty) {
                        v.setenv = add;
                    }
                }
                "controlpersist" => {
                    let a = need(first)?;
                    let val = match a.as_str() {
                        "no" | "false" => (false, 0),
                        "yes" | "true" => (true, 0),
                        _ => (true, convtime(&a).ok_or("Bad ControlPersist argument.")?),
                    };
                    if rec.first(kw, loc, active, v.control_persist.is_some()) {
                        v.control_persist = Some(val);
                    }
                }
                "tunneldevice" => {
                    let a = need(first)?;
                    let val = a2tun(&a).ok_or("Bad tun device.")?;
                    if rec.first(kw, loc, active, v.tun_device.is_some()) {
                        v.tun_device = Some(val);
                    }
                }
                "ipqos" => {
                    let a = first.unwrap_or_default();
                    let i1 = parse_ipqos(a).ok_or_else(|| format!("Bad IPQoS value: {a}"))?;
                    let i2 = match av.next() {
                        None => i1,
                        Some(b) => parse_ipqos(b).ok_or_else(|| format!("Bad IPQoS value: {b}"))?,
                    };
                    if rec.first(kw, loc, active, v.ip_qos.is_some()) {
                        v.ip_qos = Some((i1, i2));
                    }
                }
                "canonicaldomains" => {
                    let was_set = !v.canonical_domains.is_empty();
                    let mut vals = Vec::new();
                    for (i, a) in args.iter().enumerate() {
                        if a.is_empty() {
                            return Err(format!("keyword {kw} empty argument"));
                        }
                        if a.eq_ignore_ascii_case("none") && (i > 0 || args.len() > 1) {
                            return Err(format!(
                                "keyword {kw} \"none\" argument must appear alone."
                            ));
                        }
                        vals.push(valid_domain(a)?);
                    }
                    consumed_all = true;
                    if rec.first(kw, loc, active, was_set) {
                        if vals.len() > 32 {
                            return Err("too many hostname suffixes.".into());
                        }
                        v.canonical_domains = vals;
                    }
                }
                "canonicalizepermittedcnames" => {
                    let was_set = !v.permitted_cnames.is_empty();
                    let mut vals = Vec::new();
                    for (i, a) in args.iter().enumerate() {
                        if a.eq_ignore_ascii_case("none") {
                            if i > 0 || args.len() > 1 {
                                return Err(format!(
                                    "keyword {kw} \"none\" argument must appear alone."
                                ));
                            }
                            vals.push((a.clone(), String::new()));
                        } else if a == "*" {
                            vals.push(("*".into(), "*".into()));
                        } else {
                            let lower = a.to_ascii_lowercase();
                            match lower.split_once(':') {
                                Some((s, t)) if !t.is_empty() => {
                                    vals.push((s.to_owned(), t.to_owned()));
                                }
                                _ => return Err(format!("Invalid permitted CNAME \"{a}\"")),
                            }
                        }
                    }
                    consumed_all = true;
                    if rec.first(kw, loc, active, was_set) {
                        v.permitted_cnames = vals;
                    }
                }
                "streamlocalbindmask" => {
                    let a = need(first)?;
                    let t = a.trim_start();
                    let digits: String = t.chars().take_while(|c| c.is_digit(8)).collect();
                    let val = u32::from_str_radix(&digits, 8)
                        .ok()
                        .filter(|x| *x <= 0o777)
                        .ok_or("Bad mask.")?;
                    // OpenSSH sets this unconditionally: the last one read wins.
                    rec.trace.push(Trace {
                        keyword: kw,
                        location: loc.clone(),
                        outcome: TraceOutcome::Set,
                    });
                    v.streamlocal_bind_mask = Some(val);
                }
                "fingerprinthash" => {
                    let a = need(first)?;
                    let name = ["MD5", "SHA1", "SHA256", "SHA384", "SHA512"]
                        .into_iter()
                        .find(|n| n.eq_ignore_ascii_case(&a))
                        .ok_or_else(|| format!("Invalid hash algorithm \"{a}\"."))?;
                    if rec.first(kw, loc, active, v.multistate.contains_key(kw)) {
                        v.multistate.insert(kw, name);
                    }
                }
                "addkeystoagent" => {
                    let a = first;
                    let b = av.next();
                    let val = a.and_then(|x| lookup_multi(x, ADDKEYS));
                    let (state, life) = match (val, b) {
                        (Some("confirm"), Some(b)) => {
                            ("confirm", convtime(b).ok_or("invalid time value.")?)
                        }
                        (None, None) => {
                            let a = a.filter(|s| !s.is_empty()).ok_or("missing argument.")?;
                            ("true", convtime(a).ok_or("unsupported option")?)
                        }
                        (None | Some(_), Some(_)) => {
                            return Err("unsupported option".into());
                        }
                        (Some(s), None) => (s, 0),
                    };
                    if rec.first(kw, loc, active, v.add_keys_to_agent.is_some()) {
                        v.add_keys_to_agent = Some((state, life));
                    }
                }
                "identityagent" => {
                    let a = need(first)?;
                    validate_agent_path(&a, env)?;
                    if rec.first(kw, loc, active, v.strings.contains_key(kw)) {
                        v.strings.insert(kw, a);
                    }
                }
                other => return Err(format!("unimplemented keyword {other}")),
            }
        }
        if !consumed_all && av.next().is_some() {
            return Err(format!("keyword {kw} extra arguments at end of line"));
        }
        Ok(())
    }
}

fn validate_agent_path(a: &str, env: &ParseEnv<'_>) -> Res {
    if expand::expand(a, None, true, env.getenv).is_err() {
        return Err(format!("Invalid environment expansion {a}."));
    }
    if let Some(name) = a.strip_prefix('$')
        && !name.starts_with('{')
        && !valid_env_name(name)
    {
        return Err(format!("Invalid environment name {a}."));
    }
    Ok(())
}

/// `parse_jump`: check every hop; with `take`, store the last hop and the rest.
fn parse_jump(s: &str, v: &mut Values, take: bool) -> Option<()> {
    let trimmed = s.split('#').next().unwrap_or_default().trim_end();
    let mut parsed_last = None;
    if !s.eq_ignore_ascii_case("none") {
        let hops: Vec<&str> = trimmed.split(',').collect();
        for (i, hop) in hops.iter().rev().enumerate() {
            let r = match parse_ssh_uri(hop)? {
                Some(x) => x,
                None => parse_user_host_port(hop)?,
            };
            if i == 0 {
                parsed_last = Some(r);
            }
        }
    }
    if take {
        if s.eq_ignore_ascii_case("none") {
            v.jump_host = Some("none".into());
            v.jump_port = 0;
        } else if let Some((user, host, port)) = parsed_last {
            v.jump_user = user;
            v.jump_host = Some(host);
            v.jump_port = port;
            v.proxy_command = Some("none".into());
            if let Some(i) = s.rfind(',')
                && i != 0
            {
                v.jump_extra = s.get(..i).map(str::to_owned);
            }
        }
    }
    Some(())
}

/// `vis(c, VIS_WHITE)` for the escape character line.
pub(crate) fn vis_char(c: u8) -> String {
    let mut s = String::new();
    if c == b' ' {
        return "\\040".into();
    }
    if c.is_ascii_graphic() {
        if c == b'\\' {
            s.push('\\');
        }
        s.push(char::from(c));
        return s;
    }
    s.push('\\');
    let mut c = c;
    if c & 0x80 != 0 {
        c &= 0x7f;
        s.push('M');
    }
    if c.is_ascii_control() {
        s.push('^');
        s.push(if c == 0x7f { '?' } else { char::from(c + b'@') });
    } else {
        s.push('-');
        s.push(char::from(c));
    }
    s
}
