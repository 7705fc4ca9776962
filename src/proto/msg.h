/*
 * msg.h: the diskferry wire protocol: frames, messages, handshake.
 *
 * The client is the `diskferry copy` that the user runs; the server is
 * `diskferry serve` on the other host, started over ssh (transport/).
 * The ssh channel (child's stdin/stdout) is the CONTROL channel; with
 * --transport tcp, data frames travel on N extra TCP streams instead.
 *
 * Frame (all integers little endian):
 *
 *   0      4     5                       5+len
 *   +------+-----+-----------------------+
 *   | len  | typ | payload (len bytes)   |     len <= MSG_MAX_PAYLOAD
 *   +------+-----+-----------------------+
 *
 * A sealed frame (TCP streams, AES-256-GCM, see session_tcp.c, chan.c):
 *
 *   +------+--------------------------------+---------+
 *   | clen | AES-GCM(typ | payload)         | tag[16] |   clen = 1+len+16
 *   +------+--------------------------------+---------+
 *   nonce = u32 stream id (bit 31 set: server to client) | u64 counter;
 *   the counter is implicit (frames on a stream are numbered from 0), so
 *   a replayed, dropped, reordered or spliced frame fails its tag; clen
 *   is authenticated (AAD).  The key is 256 random bits per session.
 *
 * A frame longer than MSG_MAX_PAYLOAD is refused before anything is
 * allocated; every payload is decoded by msg_decode() with every field
 * bounds-checked (it treats the peer as hostile: a broken or malicious
 * peer yields DF_NET "protocol error: ...", never a crash).
 *
 * Payloads (strings are u16 length + bytes, no NUL, no NUL inside):
 *
 *   HELLO        magic "DFRY" u32, ver_min u16, ver_max u16, features u32,
 *                max_payload u32, software version string
 *   ERROR        cat u8 (exit code 2..7), offset i64, errnum u32,
 *                what string, msg string
 *   OPEN_DST     flags u32 (OPEN_OVERWRITE, OPEN_DRY_RUN, OPEN_RESUME,
 *                OPEN_CREATE), size u64, src_id u64, format string,
 *                path string
 *   OPEN_SRC     flags u32 (OPEN_FORCE_SHARE), format string, path string
 *                [OPEN_DST, OPEN_SRC with MSG_FEAT_OPEN_OPTS: n u16, n x
 *                (kind u8, string): OPT_UNDO journal (destination),
 *                OPT_PARENT_DIR dir, OPT_PARENT "CHILD=PARENT" (source),
 *                OPT_SYNC_SRC the source's name (destination,
 *                MSG_FEAT_RECORD); OPT_SYNC_PARENT, OPT_SYNC_LAYER a
 *                delta's parent identity and its own (destination,
 *                MSG_FEAT_CHANGES); OPT_VERIFY the digest's algorithm
 *                name: read back as written (MSG_FEAT_READBACK);
 *                paths on the server's host, confined as the image path]
 *   OPENED       flags u32 (OPENED_DST_IS_ZERO, OPENED_RESUMED,
 *                OPENED_RECORD), size u64,
 *                format string, name string (as the server calls it)
 *   MAP_REQ      off u64, len u64
 *   MAP_REPLY    n u32, n x (off u64, len u64, state u8)
 *   RESUME_RANGES  n u32, last u8, n x (off u64, len u64)
 *   LEAF_HASHES  n u32, last u8, n x (leaf u64, xxh128 digest leaf hash
 *                16 bytes): what the journal recorded (MSG_FEAT_LEAF_HASHES)
 *   WRITE        seq u64, off u64, comp u8, raw_len u32, data
 *   ZERO, TRIM   seq u64, off u64, len u64
 *   ACK          seq u64 (every data frame with seq < this is applied),
 *                bytes u64 (payload bytes applied)
 *   FLUSH        seq u64 (= number of data frames sent before it)
 *   SET_SIZE     size u64: the stream's end (OPEN_SIZE_UNKNOWN), before
 *                the FLUSH that ends the data
 *   FLUSHED      (empty)
 *   DIGEST_REQ   alg u8, threads u32, size u64
 *   DIGEST       alg u8, len u8, bytes[len]
 *   READ_STREAM  flags u32 (bits 0-7: digest algorithm), comp u8 (3 =
 *                auto), level u8, streams u32, bwlimit u64 (bytes/s
 *                for the server's sending, 0 = none); the ranges to
 *                skip (resume) come as RESUME_RANGES before it
 *   STREAM_END   seq u64 (data frames sent), digest: alg u8, len u8, bytes
 *   TCP_REQ      streams u32
 *   TCP_OFFER    port u16, key[32] [MSG_FEAT_TCP_ADDR: address string:
 *                where serve listens, the address ssh arrived on]
 *   STREAM_HELLO stream id u32 (first frame on a TCP stream, sealed)
 *   DONE         flags u32 (DONE_VERIFIED: remove the resume journal)
 *   KEEPALIVE    (empty; MSG_FEAT_KEEPALIVE: each side sends one every
 *                SESSION_KEEPALIVE_S, so a silent peer is a dead one)
 *   ASK          what string (what the destination holds), name string
 *                (MSG_FEAT_ASK: OPEN_DST with OPEN_ASK found data to
 *                overwrite; the client asks its user, then answers)
 *   ANSWER       flags u32 (ANSWER_YES: go ahead; 0: refused)
 *   UNDO         flags u32 (UNDO_DRY_RUN), journal string, dst string
 *                (may be empty: the one recorded); MSG_FEAT_UNDO
 *   UNDONE       records u64, bytes u64, flags u32 (UNDONE_COMPLETE,
 *                UNDONE_TRUNCATED)
 *   TREE_REQ     alg u8 (1 xxh128, 2 sha256), block_level u8 (0..10: a
 *                block is 2^block_level 64 KiB leaves) (MSG_FEAT_TREE)
 *   TREE         size u64, digest: alg u8, len u8, bytes, bytes_read u64
 *                (what serve read to build its tree)
 *   TREE_HASHES  first u64, n u32 (1..MSG_TREE_MAX_NODES), n x hlen bytes:
 *                the client's hashes of the walk's current nodes
 *                [first, first+n) of this round
 *   TREE_BITS    first u64, n u32, (n + 7) / 8 bytes: bit i (LSB first)
 *                set when node first+i differs; the unused bits are 0
 *   TREE_CHANGES n u32, last u8, n x (off u64, len u64): ranges that
 *                changed, ascending (MSG_FEAT_CHANGES)
 *   TREE_PROVED  (empty)
 *   PROBE        step u32, dir u8 (PROBE_ECHO, PROBE_UP, PROBE_DOWN),
 *                bytes u64, ms u32 (1..MSG_PROBE_MAX_MS: the step's time
 *                limit at serve) (MSG_FEAT_PROBE)
 *   PROBE_DATA   step u32, 1..MSG_MAX_DATA bytes of incompressible data
 *                (never compressed; on any data channel, either way)
 *   PROBE_DONE   step u32, bytes u64, span_bytes u64, span_us u64: UP:
 *                what serve received of the step, DOWN: what it sent
 *                (span 0), ECHO: zeros
 *
 * Sequences (-> client to server, <- server to client):
 *
 *   copy SRC host:DST                 copy host:SRC DST
 *   -> HELLO  <- HELLO                -> HELLO  <- HELLO
 *   -> OPEN_DST  <- OPENED            -> OPEN_SRC  <- OPENED
 *   <- RESUME_RANGES (if resumed)     -> RESUME_RANGES (ranges to skip)
 *   [-> TCP_REQ <- TCP_OFFER,         [-> TCP_REQ <- TCP_OFFER,
 *    client opens N streams]           client opens N streams]
 *   -> WRITE/ZERO/TRIM ... (no wait)  -> READ_STREAM
 *   <- ACK (cumulative, windowed)     <- WRITE/ZERO ... (in order by seq)
 *   -> FLUSH(seq)  <- FLUSHED         <- STREAM_END(seq, source digest)
 *   -> DIGEST_REQ  <- DIGEST          (client writes, verifies locally)
 *   -> DONE                           -> DONE
 *
 *   Confirmation (--overwrite on the client's terminal, without --yes):
 *   -> OPEN_DST(OPEN_ASK)  <- ASK(what, name)  -> ANSWER(yes)
 *   <- OPENED; an ANSWER without ANSWER_YES is answered by an ERROR
 *   (exit 3) and nothing is written.
 *
 *   diskferry undo host:JOURNAL:  -> HELLO <- HELLO -> UNDO <- UNDONE
 *
 *   Link probe (MSG_FEAT_PROBE; before anything is opened, or instead):
 *   [-> TCP_REQ <- TCP_OFFER, client opens N streams]
 *   -> PROBE(step, ECHO)                     <- PROBE_DONE(step)
 *   -> PROBE(step, DOWN, bytes, ms)          <- PROBE_DATA(step) ...
 *                                               PROBE_DONE(step, sent)
 *   -> PROBE(step, UP, bytes, ms)  -> PROBE_DATA(step) ...
 *                                  <- PROBE_DONE(step, received, span)
 *   ... then OPEN_DST / OPEN_SRC / UNDO as usual, or DONE (or the end
 *   of the control channel).  Steps number from 1, ascending; a
 *   PROBE_DATA of an older step is dropped (the data still in flight
 *   when a step ran out of time).  serve opens no disk for a probe.
 *
 *   Hash-tree comparison (MSG_FEAT_TREE; verify with a remote disk, and
 *   sync), after OPENED of an OPEN_SRC, or of an OPEN_DST on an existing
 *   destination before any data frame:
 *   -> TREE_REQ(alg, block_level)     serve builds its endpoint's tree
 *   <- TREE(size, digest, bytes_read) (track/htree.h) and keeps it
 *   then rounds of the walk both sides take in step (struct htree_walk,
 *   starting at the root): per round
 *   -> TREE_HASHES(first, n, hashes)  the walk's current nodes in chunks
 *   <- TREE_BITS(first, n, bits)      of at most MSG_TREE_MAX_NODES, in
 *                                     order, at most 2 unanswered
 *   and when the round's last bits are in, both sides call
 *   htree_walk_next() with them.  A round of no nodes ends the walk (no
 *   difference); so does the round at the block level: serve keeps the
 *   differing ranges (serve_tree_diff()), the client has them too.
 *   Only hashes cross: about hlen bytes per node visited, which grows
 *   with the change, not with the disk.  A TREE_HASHES before TREE_REQ,
 *   after the walk, out of order, of the wrong hash length or beyond the
 *   round's nodes is a protocol error (serve answers ERROR); so are
 *   TREE_BITS that do not answer the oldest chunk in flight.
 *
 *   State records (MSG_FEAT_RECORD; engine/sync.h): the client names its
 *   source in OPEN_DST (OPT_SYNC_SRC).  Serve keeps the record of an
 *   existing raw destination on its host: a destination recorded as a
 *   copy of that source is written without OPEN_OVERWRITE; the record
 *   is marked busy before anything is written and rewritten after DONE
 *   of a verified job, from the leaves the DIGEST_REQ read back.  When
 *   the record says what the destination holds, OPENED carries
 *   OPENED_RECORD, and
 *   -> TREE_REQ_RECORD(alg, level)    (as TREE_REQ) takes the record's
 *   <- TREE(size, digest, 0)          tree instead of reading the disk;
 *   the walk is the same, and before answering its last chunk serve
 *   proves the destination against the record (sampled leaves and every
 *   differing one): a destination written behind the record's back is
 *   refused (ERROR, exit 3) before any data frame.  After a walk,
 *   DIGEST_REQ reads back only the differing ranges: the rest hash as
 *   the walk's tree says.  A sync's dry run (OPEN_DRY_RUN | OPEN_SYNC)
 *   keeps the session open for the walk (nothing written, no record
 *   touched) until DONE; a DST that is not there is OPENED as new
 *   (OPENED_DST_IS_ZERO).
 *
 *   A sync whose changes the client reads from metadata (sync --changes
 *   lvm-cow:, lvm-thin:, bitmap:; MSG_FEAT_CHANGES) needs no walk:
 *   -> TREE_REQ_RECORD  <- TREE       (the record's tree, as above)
 *   -> TREE_CHANGES ... (last)        the changed ranges, in chunks
 *   <- TREE_PROVED                    serve proved DST against its
 *                                     record (sampled leaves and every
 *                                     changed one), else ERROR (exit 3)
 *   The changed ranges are then the walk's differing ranges, but
 *   DIGEST_REQ compares only them: every leaf wholly outside hashes as
 *   a mark on both sides (change_source_unverified), since the client
 *   knows SRC's hashes only where it read.  The record rewritten after
 *   DONE keeps its own hashes there.
 *
 *   Resume (--resume after a broken link or kill -9 of either side):
 *   the receiving end keeps a journal of ranges written and made durable
 *   (journal.h) beside the destination (a new file is written as
 *   .NAME.diskferry-partial and renamed when done).  To a remote host:
 *   OPEN_DST(OPEN_RESUME) is answered with OPENED_RESUMED + the
 *   journal's RESUME_RANGES (and, with MSG_FEAT_LEAF_HASHES, its
 *   LEAF_HASHES, at least one message) and the client leaves them out.  From a
 *   remote host: the client sends its journal's RESUME_RANGES before
 *   READ_STREAM and the server leaves them out.  Either way the digest
 *   covers the whole disk, and DONE removes the journal.
 *
 *   Map of a remote source: -> MAP_REQ(off, len)  <- MAP_REPLY(extents),
 *   which may stop short of len (ask again from its end).
 *
 * Pipelining: data frames (WRITE, ZERO, TRIM) carry a sequence number
 * (0, 1, 2, ... per session, across all streams); the receiver applies
 * them strictly in seq order (a reorder buffer merges TCP streams) and
 * acknowledges cumulatively every MSG_ACK_EVERY bytes; the sender keeps
 * at most a window of unacknowledged bytes in flight, so a write never
 * waits for a round trip.  FLUSH(seq) on the control channel waits until
 * every data frame before seq has been applied and is durable.
 * An ERROR from the server may come at any time and ends the session.
 *
 * Versioning: each side sends the range of protocol versions it speaks
 * [ver_min, ver_max]; the session uses the highest common version, and
 * no common version is an error naming both ranges.  New message types
 * and fields appended to a payload need a new version or a feature bit
 * (MSG_FEAT_*: the session uses the AND of both sides' features, and a
 * message or field that a feature brings is sent only when the session
 * has it; the receiver accepts the field's absence).  A receiver refuses unknown message types
 * and trailing bytes: the version settles what is valid.
 */
#ifndef DF_MSG_H
#define DF_MSG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/extent.h"

#define MSG_MAGIC 0x59524644u               /* "DFRY" little endian */
#define MSG_VERSION_MIN 1
#define MSG_VERSION_MAX 1
#define MSG_HDR_LEN 5                       /* u32 len + u8 type */
#define MSG_MAX_DATA (16u * 1024 * 1024)    /* raw bytes in one WRITE */
#define MSG_MAX_PAYLOAD (MSG_MAX_DATA + 4096)
#define MSG_TAG_LEN 16                      /* AES-GCM tag, sealed frames */
#define MSG_MAX_STR 4096                    /* paths, messages */
#define MSG_ACK_EVERY (4u * 1024 * 1024)
#define MSG_MAX_RANGES_PER_MSG 65536

enum msg_type {
    MSG_HELLO = 1,
    MSG_ERROR = 2,
    MSG_OPEN_DST = 3,
    MSG_OPEN_SRC = 4,
    MSG_OPENED = 5,
    MSG_MAP_REQ = 6,
    MSG_MAP_REPLY = 7,
    MSG_RESUME_RANGES = 8,
    MSG_WRITE = 9,
    MSG_ZERO = 10,
    MSG_TRIM = 11,
    MSG_ACK = 12,
    MSG_FLUSH = 13,
    MSG_FLUSHED = 14,
    MSG_DIGEST_REQ = 15,
    MSG_DIGEST = 16,
    MSG_READ_STREAM = 17,
    MSG_STREAM_END = 18,
    MSG_TCP_REQ = 19,
    MSG_TCP_OFFER = 20,
    MSG_STREAM_HELLO = 21,
    MSG_DONE = 22,
    MSG_KEEPALIVE = 23,
    MSG_ASK = 24,
    MSG_ANSWER = 25,
    MSG_UNDO = 26,
    MSG_UNDONE = 27,
    MSG_LEAF_HASHES = 28,
    MSG_SET_SIZE = 29,
    MSG_TREE_REQ = 30,
    MSG_TREE = 31,
    MSG_TREE_HASHES = 32,
    MSG_TREE_BITS = 33,
    MSG_TREE_REQ_RECORD = 34,
    MSG_TREE_CHANGES = 35,
    MSG_TREE_PROVED = 36,
    MSG_PROBE = 37,
    MSG_PROBE_DATA = 38,
    MSG_PROBE_DONE = 39,
    MSG_TYPE_MAX = 39,
};

/* Feature bits in HELLO. */
enum msg_feature {
    MSG_FEAT_ZSTD = 1u << 0,
    MSG_FEAT_LZ4 = 1u << 1,
    MSG_FEAT_TCP = 1u << 2,
    MSG_FEAT_RESUME = 1u << 3,
    MSG_FEAT_XXH128 = 1u << 4,
    MSG_FEAT_SHA256 = 1u << 5,
    MSG_FEAT_TRIM = 1u << 6,
    MSG_FEAT_KEEPALIVE = 1u << 7,   /* KEEPALIVE; silence is a timeout */
    MSG_FEAT_ASK = 1u << 8,         /* OPEN_ASK, ASK, ANSWER */
    MSG_FEAT_OPEN_OPTS = 1u << 9,   /* the options tail of OPEN_* */
    MSG_FEAT_UNDO = 1u << 10,       /* OPT_UNDO, UNDO, UNDONE */
    MSG_FEAT_TCP_ADDR = 1u << 11,   /* the address in TCP_OFFER */
    /* The server checks a source for writers (safety_check_source) and
     * understands OPEN_FORCE_SHARE.  An older server does neither: the
     * client then never sends the flag (it would be refused). */
    MSG_FEAT_SRC_CHECK = 1u << 12,
    /* A resumed OPEN_DST's RESUME_RANGES are followed by LEAF_HASHES
     * (journal.h "h" lines).  Without it the client reads its kept
     * leaves to hash them. */
    MSG_FEAT_LEAF_HASHES = 1u << 13,
    /* OPEN_SIZE_UNKNOWN and SET_SIZE: a stream whose size is known at
     * its end can be written (a new raw or qcow2 file, or in place). */
    MSG_FEAT_STREAM_DST = 1u << 14,
    /* TREE_REQ, TREE, TREE_HASHES, TREE_BITS: a hash-tree comparison
     * with the open endpoint. */
    MSG_FEAT_TREE = 1u << 15,
    /* The destination's state record kept on its host (engine/sync.h):
     * OPT_SYNC_SRC, OPENED_RECORD, TREE_REQ_RECORD. */
    MSG_FEAT_RECORD = 1u << 16,
    /* TREE_CHANGES, TREE_PROVED: a sync whose changes come from
     * metadata on the client's host, against the record's tree. */
    MSG_FEAT_CHANGES = 1u << 17,
    /* PROBE, PROBE_DATA, PROBE_DONE (the link probe of `diskferry
     * plan`), and TCP_REQ before anything is opened. */
    MSG_FEAT_PROBE = 1u << 18,
    /* OPT_VERIFY: the destination is read back as it is written
     * (engine/readback.h), for the DIGEST_REQ that will end the copy. */
    MSG_FEAT_READBACK = 1u << 19,
    /* OPEN_FSYNC: the destination is made durable (--fsync).  An older
     * serve never syncs the data it writes: the client refuses --fsync
     * with it rather than promise what it does not do. */
    MSG_FEAT_FSYNC = 1u << 20,
};
#define MSG_FEAT_ALL 0x1fffffu

/* PROBE directions. */
enum msg_probe_dir {
    PROBE_ECHO = 0,             /* answered at once: a round trip */
    PROBE_UP = 1,               /* the client sends, serve counts */
    PROBE_DOWN = 2,             /* serve sends, the client counts */
};
/* Longest step a PROBE may ask for. */
#define MSG_PROBE_MAX_MS 60000u

/* Nodes in one TREE_HASHES / TREE_BITS (2 MiB of SHA-256 hashes). */
#define MSG_TREE_MAX_NODES 65536u
/* Highest block level of a TREE_REQ (htree_block_level: 64 MiB). */
#define MSG_TREE_MAX_BLOCK_LEVEL 10

/* OPEN_DST / OPEN_SRC flags. */
enum msg_open_flags {
    OPEN_OVERWRITE = 1u << 0,   /* --overwrite: data may be replaced */
    OPEN_DRY_RUN = 1u << 1,     /* check only, write nothing */
    OPEN_RESUME = 1u << 2,      /* continue from the resume journal */
    OPEN_CREATE = 1u << 3,      /* create the file if it does not exist */
    OPEN_FORCE_SHARE = 1u << 4, /* OPEN_SRC: read it even if in use
                                   (only with MSG_FEAT_SRC_CHECK) */
    OPEN_ASK = 1u << 5,         /* ask the client before overwriting */
    OPEN_SIZE_UNKNOWN = 1u << 6, /* OPEN_DST: a stream; size 0, the real
                                    one comes in SET_SIZE before the last
                                    FLUSH (MSG_FEAT_STREAM_DST) */
    OPEN_SYNC = 1u << 7,        /* OPEN_DST with OPEN_DRY_RUN: a sync's
                                   tree walk follows, then DONE
                                   (MSG_FEAT_RECORD) */
    OPEN_ANY_RECORD = 1u << 8,  /* OPEN_DST: the record says what DST
                                   holds whatever source it names (a
                                   sync from metadata: TREE_CHANGES);
                                   consent is still only a record of
                                   this source (MSG_FEAT_CHANGES) */
    OPEN_BUSY_RECORD = 1u << 9, /* OPEN_DST: a record a killed job left
                                   busy is still the base (sync --resume
                                   from metadata: the changes are all
                                   written again, so only the samples
                                   outside them are proved;
                                   MSG_FEAT_CHANGES) */
    OPEN_FSYNC = 1u << 10,      /* OPEN_DST: --fsync: each FLUSH, the
                                   journal's commits and the end wait for
                                   stable storage, and the read-back reads
                                   the medium (MSG_FEAT_FSYNC) */
};
#define OPEN_FLAGS_ALL 0x7ffu

/* Kinds in the options tail of OPEN_DST / OPEN_SRC. */
enum msg_open_opt {
    OPT_UNDO = 1,               /* --undo JOURNAL (destination) */
    OPT_PARENT_DIR = 2,         /* --parent-dir DIR (source) */
    OPT_PARENT = 3,             /* --parent CHILD=PARENT (source) */
    OPT_SYNC_SRC = 4,           /* the source as a record names it
                                   (destination; MSG_FEAT_RECORD) */
    OPT_SYNC_PARENT = 5,        /* sync --changes top-layer: the parent
                                   identity the delta records; a record
                                   of that parent is the base and the
                                   consent (MSG_FEAT_CHANGES) */
    OPT_SYNC_LAYER = 6,         /* the source's own layer identity, for
                                   the record (MSG_FEAT_CHANGES) */
    OPT_VERIFY = 7,             /* the digest algorithm (its name) of the
                                   DIGEST_REQ that will end the copy
                                   (destination; MSG_FEAT_READBACK) */
};
#define MSG_MAX_OPEN_OPTS 64

enum msg_answer_flags { ANSWER_YES = 1u << 0 };
enum msg_undo_flags { UNDO_DRY_RUN = 1u << 0 };
enum msg_undone_flags {
    UNDONE_COMPLETE = 1u << 0,
    UNDONE_TRUNCATED = 1u << 1,
};

enum msg_opened_flags {
    OPENED_DST_IS_ZERO = 1u << 0,   /* new file: reads as zeros */
    OPENED_RESUMED = 1u << 1,       /* RESUME_RANGES follow */
    OPENED_RECORD = 1u << 2,        /* the destination's state record
                                       says what it holds (TREE_REQ_RECORD
                                       may ask for it) */
};

enum msg_done_flags {
    DONE_VERIFIED = 1u << 0,
};

/* WRITE compression. */
enum msg_comp { COMP_NONE = 0, COMP_ZSTD = 1, COMP_LZ4 = 2 };

/* One decoded message; pointers borrow the frame buffer. */
struct msg {
    uint8_t type;
    /* HELLO */
    uint32_t magic;
    uint16_t ver_min, ver_max;
    uint32_t features, max_payload;
    /* ERROR */
    uint8_t cat;
    int64_t err_off;
    uint32_t errnum;
    /* OPEN_*, OPENED, READ_STREAM, DONE */
    uint32_t flags;
    uint64_t size;
    uint64_t src_id;
    /* WRITE / ZERO / TRIM / ACK / FLUSH / STREAM_END / MAP_REQ */
    uint64_t seq;
    uint64_t off;
    uint64_t len;
    uint8_t comp;
    uint8_t level;
    uint32_t raw_len;
    const uint8_t *data;
    size_t data_len;
    /* MAP_REPLY / RESUME_RANGES: n records at data (use msg_range());
     * TREE_HASHES / TREE_BITS: first node in off, n nodes, data;
     * TREE_REQ: block level in level; TREE: bytes read in len;
     * OPEN_* options tail: n options at data (msg_open_opt()) */
    uint32_t n;
    bool last;
    /* DIGEST / DIGEST_REQ / STREAM_END */
    uint8_t alg;
    uint32_t threads;
    uint8_t digest_len;
    uint8_t digest[32];
    /* PROBE: step in seq, direction in flags, bytes in len, time limit
     * in probe_ms; PROBE_DATA: step in seq, bytes at data;
     * PROBE_DONE: step in seq, bytes in len, and the receiver's
     * span: bytes after its first frame, microseconds from the first
     * frame to the last */
    uint32_t probe_ms;
    uint64_t span_bytes, span_us;
    /* TCP */
    uint32_t streams;
    uint16_t port;
    uint8_t key[32];
    uint32_t stream_id;
    /* strings (NUL-terminated copies) */
    char s1[MSG_MAX_STR + 1];   /* format / what / software version */
    char s2[MSG_MAX_STR + 1];   /* path / msg / name */
};

const char *msg_type_name(uint8_t type);
/* Is this a sequenced data frame (WRITE, ZERO, TRIM)? */
static inline bool msg_is_data(uint8_t type)
{
    return type == MSG_WRITE || type == MSG_ZERO || type == MSG_TRIM;
}

/*
 * Decode one payload of `type` into m.  Fails with DF_NET "protocol
 * error: ..." (what = peer) on anything malformed: short, trailing
 * bytes, bad magic, strings too long or with NUL, counts that do not fit.
 */
int msg_decode(uint8_t type, const uint8_t *p, size_t len, struct msg *m,
               const char *peer, struct df_error *err);
/* The next option of an OPEN_* options tail, from *pos (start at 0):
 * 1 with its kind and value (NUL-terminated, out has MSG_MAX_STR + 1
 * bytes), 0 at the end.  msg_decode() has checked every entry. */
int msg_open_opt(const struct msg *m, size_t *pos, uint8_t *kind,
                 char *out);
/* Record i of a LEAF_HASHES: the leaf number and its 16-byte hash. */
void msg_leaf_hash(const struct msg *m, uint32_t i, uint64_t *leaf,
                   uint8_t *hash);
/* Record i of a MAP_REPLY (state != NULL) or RESUME_RANGES. */
void msg_range(const struct msg *m, uint32_t i, uint64_t *off,
               uint64_t *len, uint8_t *state);

/*
 * Building payloads: a growable buffer with a ceiling.  After an
 * allocation failure or the ceiling, `failed` is set and further puts
 * are ignored; msg_buf_ok() tells.
 */
struct msg_buf {
    uint8_t *p;
    size_t len, cap;
    bool failed;
};
void msg_buf_init(struct msg_buf *b);
void msg_buf_release(struct msg_buf *b);
void msg_buf_reset(struct msg_buf *b);
void msg_put_u8(struct msg_buf *b, uint8_t v);
void msg_put_u16(struct msg_buf *b, uint16_t v);
void msg_put_u32(struct msg_buf *b, uint32_t v);
void msg_put_u64(struct msg_buf *b, uint64_t v);
void msg_put_bytes(struct msg_buf *b, const void *p, size_t len);
void msg_put_str(struct msg_buf *b, const char *s);
static inline bool msg_buf_ok(const struct msg_buf *b)
{
    return !b->failed;
}

/* Encoders for the messages with fixed shape (into b, reset first). */
void msg_enc_hello(struct msg_buf *b, uint32_t features);
void msg_enc_error(struct msg_buf *b, const struct df_error *e);
void msg_enc_open(struct msg_buf *b, uint32_t flags, uint64_t size,
                  uint64_t src_id, const char *format, const char *path,
                  bool dst);
void msg_enc_opened(struct msg_buf *b, uint32_t flags, uint64_t size,
                    const char *format, const char *name);
void msg_enc_range_hdr(struct msg_buf *b, uint32_t n, bool last);
void msg_enc_ranges(struct msg_buf *b, const struct extent_list *l,
                    size_t first, size_t n, bool last, bool with_state);
void msg_enc_write_hdr(struct msg_buf *b, uint64_t seq, uint64_t off,
                       uint8_t comp, uint32_t raw_len);
void msg_enc_zero(struct msg_buf *b, uint64_t seq, uint64_t off,
                  uint64_t len);
void msg_enc_u64(struct msg_buf *b, uint64_t v);
void msg_enc_ack(struct msg_buf *b, uint64_t seq, uint64_t bytes);
void msg_enc_digest_req(struct msg_buf *b, uint8_t alg, uint32_t threads,
                        uint64_t size);
void msg_enc_digest(struct msg_buf *b, uint8_t type, uint64_t seq,
                    uint8_t alg, const uint8_t *d, uint8_t len);
void msg_enc_read_stream(struct msg_buf *b, uint32_t flags, uint8_t comp,
                         uint8_t level, uint32_t streams, uint64_t bwlimit);
/* TREE_HASHES / TREE_BITS: first, n, then len bytes of data. */
void msg_enc_tree_nodes(struct msg_buf *b, uint64_t first, uint32_t n,
                        const void *data, size_t len);
void msg_enc_probe(struct msg_buf *b, uint32_t step, uint8_t dir,
                   uint64_t bytes, uint32_t ms);
void msg_enc_probe_done(struct msg_buf *b, uint32_t step, uint64_t bytes,
                        uint64_t span_bytes, uint64_t span_us);
void msg_enc_tcp_offer(struct msg_buf *b, uint16_t port,
                       const uint8_t key[32]);
/* Append the options tail to an encoded OPEN_*: n options, kinds[i]
 * with vals[i]. */
void msg_enc_open_opts(struct msg_buf *b, size_t n, const uint8_t *kinds,
                       const char *const *vals);

/*
 * Negotiate from the peer's HELLO: fails with DF_NET naming both version
 * ranges when they do not overlap.  *version and *features receive the
 * session's version and AND-ed features.
 */
int msg_negotiate(const struct msg *peer_hello, uint32_t my_features,
                  const char *peer, uint16_t *version, uint32_t *features,
                  struct df_error *err);

/* Turn a received ERROR into err (category and text from the peer,
 * what prefixed with "host:" by the caller's peer name). */
int msg_error_to_df(const struct msg *m, struct df_error *err);

#endif
