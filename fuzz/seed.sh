#!/bin/sh
# Seed the fuzz corpora from the committed captures of real OpenSSH agent traffic
# (crates/airlock-protocol/tests/captures/*.bin). Each capture is a whole frame; the targets take
# a frame body, so the 4-byte length prefix is stripped. Sign-request data (the bytes after the
# key blob) also seeds signed_data. Run from anywhere; the corpus directories are gitignored.
set -eu
fuzz_dir=$(cd "$(dirname "$0")" && pwd)
captures="$fuzz_dir/../crates/airlock-protocol/tests/captures"
corpus="$fuzz_dir/corpus"
mkdir -p "$corpus/decode_request" "$corpus/decode_response" "$corpus/signed_data"

# Big-endian uint32 at byte offset $2 of file $1.
u32_at() {
    od -An -tu1 -j "$2" -N 4 "$1" | awk '{ print (($1 * 256 + $2) * 256 + $3) * 256 + $4 }'
}

n=0
for frame in "$captures"/*.bin; do
    name=$(basename "$frame" .bin)
    case "$name" in
        *-req-*) target=decode_request ;;
        *) target=decode_response ;;
    esac
    tail -c +5 "$frame" > "$corpus/$target/$name"
    n=$((n + 1))
    case "$name" in
        *-req-sign-request-*)
            # body: byte 13, string key_blob, string data, uint32 flags
            key_len=$(u32_at "$frame" 5)
            data_len=$(u32_at "$frame" $((9 + key_len)))
            tail -c +$((14 + key_len)) "$frame" | head -c "$data_len" > "$corpus/signed_data/$name"
            ;;
    esac
done
echo "seeded $n frames into $corpus (and $(ls "$corpus/signed_data" | wc -l) sign-request payloads into signed_data)"
