/*
 * remote.h: the client side of a session: connect to `diskferry serve`
 * over ssh (and TCP streams), then either a remote sink (copy SRC
 * host:DST, driven by the engine) or a remote source (copy host:SRC DST:
 * the server runs the read/zero-detect/hash side and streams data and
 * zero ranges in order; this side writes them into a local sink and
 * verifies against the digest the server computed as it read).
 *
 * Resume (local -> remote): with --resume the server answers OPEN_DST
 * with the ranges its journal holds; they become the engine's plan
 * (remote_plan(): engine/plan.h, resume_plan), so that only what is
 * missing is read and sent (the digest still covers the whole disk:
 * kept leaves are read only to hash them), and count as
 * skipped_resumed.
 * Resume (remote -> local): a new local file is written as
 * .NAME.diskferry-partial with a journal beside it (journal.h); with
 * --resume the journal's ranges are sent to the server, whose engine
 * copies with the same plan.
 */
#ifndef DF_REMOTE_H
#define DF_REMOTE_H

#include <stdbool.h>
#include <stdint.h>

#include "compress.h"
#include "engine/job.h"
#include "engine/sink.h"
#include "image/image.h"
#include "probe.h"
#include "util/error.h"
#include "util/file.h"

struct remote_opts {
    const char *rsh;            /* --rsh; NULL: "ssh" */
    const char *remote_path;    /* --remote-path; NULL: "diskferry" */
    const char *user;           /* may be NULL */
    const char *host;
    const char *path;           /* on the remote host */
    enum comp_mode comp;
    int level;                  /* 0: the mode's default */
    uint64_t bwlimit;           /* bytes/s, 0: none */
    bool tcp;
    unsigned streams;           /* --streams (tcp) */
    bool resume, overwrite, dry_run;
    bool force_share;           /* a remote source in use is read anyway */
    const char *format;         /* -O for a destination, -f for a source */
    unsigned threads;           /* compression workers; 0: cores */
    int verbose;                /* > 0: relay the remote's stderr */
    unsigned timeout;           /* --timeout seconds; 0: the default */
    bool pass_timeout;          /* also give it to serve (--timeout) */
    /* --overwrite on the user's terminal without --yes: if the remote
     * destination holds data, ask the user to type its name (the same
     * question as a local overwrite, naming host:PATH) */
    bool ask;
    const char *undo;           /* --undo JOURNAL on the remote host */
    /* The source as the destination's state record names it (this
     * host's name and the path); NULL: none sent */
    const char *record_src;
    /* A dry run of sync: serve stays for the tree walk (OPEN_SYNC) */
    bool sync_walk;
    /* A sync from metadata: DST's record is its base whatever source it
     * names (OPEN_ANY_RECORD), or, for a delta, a record of its parent
     * (sync_parent: OPT_SYNC_PARENT; sync_layer: OPT_SYNC_LAYER, the
     * delta's own identity, kept in the new record); busy_record: a
     * record a killed sync left busy too (--resume: OPEN_BUSY_RECORD) */
    bool any_record;
    const char *sync_parent;
    const char *sync_layer;
    bool busy_record;
    /* The digest the copy ends with (util/hash.h digest_alg_name; NULL:
     * no verification): a destination told it reads itself back as it
     * is written (OPT_VERIFY, MSG_FEAT_READBACK) */
    const char *verify;
    bool fsync;                 /* --fsync: DST durable on its host */
    /* image options of a remote source, interpreted on its host */
    const char *const *parent_dirs;
    size_t n_parent_dirs;
    const struct parent_override *parents;
    size_t n_parents;
};

struct remote;

struct undo_result {
    uint64_t records, bytes;
    bool complete, truncated;
};

struct remote_stats {
    uint64_t bytes_wire;        /* sent + received on all channels */
    uint64_t raw_in, comp_out;  /* compression: payload before/after */
    uint64_t skipped_resumed;   /* bytes the journal said were there */
    uint64_t bytes_acked;       /* to a remote DST: data it applied */
    int zstd_level_max;         /* highest auto level used */
};

/* Identify a source for the resume journal: path and size, and when
 * the source is open here (f, may be NULL) its identity: a file's
 * device, inode and times, a device's sampled blocks (journal.h
 * invariant 5). */
uint64_t remote_src_id(const char *path, uint64_t size,
                       const struct df_file *f);

int remote_connect(const struct remote_opts *o, struct remote **out,
                   struct df_error *err);
/* A stream's size, known at its end (remote_open_dst). */
#define REMOTE_SIZE_UNKNOWN UINT64_MAX
/* Open the remote destination (size bytes; REMOTE_SIZE_UNKNOWN: a
 * stream, whose size the sink sends at finish) and return a sink for the
 * engine (owned by r: do not free).  src_id identifies the source for
 * the resume journal.  With o->ask, the server's question is asked
 * here (on stderr, answered on stdin); *created (may be NULL) says the
 * destination is a new file. */
int remote_open_dst(struct remote *r, uint64_t size, uint64_t src_id,
                    struct sink **out, bool *created, struct df_error *err);
/* Open the remote source: its size and format. */
int remote_open_src(struct remote *r, uint64_t *size, char *format,
                    size_t flen, struct df_error *err);
/* After remote_open_src: append what is where in [off, off+len) of the
 * remote source (EXT_DATA/ZERO/HOLE) to out; may stop short. */
int remote_map(struct remote *r, uint64_t off, uint64_t len,
               struct extent_list *out, struct df_error *err);
/*
 * Stream the remote source into dst, then finish and (opts->verify)
 * compare dst's digest with the source digest the server sent.  With a
 * journal j (may be NULL) the ranges written are recorded (journal.h);
 * skip (may be NULL) lists ranges dst already holds from an interrupted
 * run: the server does not send them (the digest still covers them).
 */
struct rjournal;
int remote_copy_from(struct remote *r, struct sink *dst, struct rjournal *j,
                     const struct extent_list *skip,
                     const struct job_opts *opts, struct job_stats *st,
                     struct df_error *err);
/*
 * `diskferry undo host:JOURNAL [DST]`: serve runs the undo on its host
 * (its confinement applies to JOURNAL and DST; DST NULL: the recorded
 * one).  st receives what it reported.
 */
int remote_undo(struct remote *r, const char *dst, struct undo_result *st,
                struct df_error *err);
/* After remote_open_dst: the plan of a resumed copy (job_opts.plan)
 * of src when the server resumed its journal, else NULL.  Owned by r.
 * The journal's leaf hashes (MSG_FEAT_LEAF_HASHES) spare reading the
 * kept leaves for the digest only for a source provably unchanged since
 * the interrupted run (a raw regular file: remote_src_id). */
struct plan_inputs;
const struct plan_inputs *remote_plan(struct remote *r,
                                      const struct image *src);
/*
 * The hash-tree comparison with the open remote endpoint (msg.h,
 * "Hash-tree comparison"; after remote_open_src, or remote_open_dst of
 * an existing destination before anything is written).
 *
 * remote_tree_request() asks serve to build its tree (alg, a block of
 * 2^block_level leaves), so that it reads while this side builds its
 * own; remote_tree_diff() asks too if that was not done, waits for the
 * remote tree, and walks it in step with `mine` (built here, the same
 * size and algorithm: else DF_USAGE naming both): out receives the
 * ranges where the disks differ (block granularity), st what crossed.
 * A serve without MSG_FEAT_TREE: DF_NET "too old".  0 or -1.
 */
struct htree;
struct remote_tree_stats {
    uint64_t hash_bytes_sent;       /* hashes in TREE_HASHES */
    uint64_t hash_bytes_received;   /* bits in TREE_BITS */
    uint64_t rounds;                /* steps of the walk */
    uint64_t remote_size;           /* the remote disk's */
    uint64_t remote_bytes_read;     /* what serve read for its tree */
    struct digest remote_digest;
};
int remote_tree_request(struct remote *r, enum digest_alg alg,
                        unsigned block_level, struct df_error *err);
/* After remote_open_dst: the destination's state record on its host
 * says what it holds (OPENED_RECORD); remote_tree_request_record()
 * then takes the record's tree instead of the disk's, and serve proves
 * the disk against it before the walk ends (msg.h, "State records"). */
bool remote_dst_has_record(const struct remote *r);
int remote_tree_request_record(struct remote *r, enum digest_alg alg,
                               unsigned block_level, struct df_error *err);
int remote_tree_diff(struct remote *r, const struct htree *mine,
                     unsigned block_level, struct extent_list *out,
                     struct remote_tree_stats *st, struct df_error *err);
/* After remote_tree_request_record: the changed ranges (ascending) as
 * the client's metadata says, instead of a walk; serve proves DST
 * against its record before it answers (msg.h, TREE_CHANGES).  The
 * digest then compares only those leaves (track.h,
 * change_source_unverified, on both sides). */
int remote_tree_changes(struct remote *r, uint64_t size,
                        const struct extent_list *changed,
                        struct remote_tree_stats *st, struct df_error *err);
/*
 * The link probe (probe.h; `diskferry plan`): after remote_connect(),
 * before anything is opened or instead of it.  Sets up what the
 * transport needs as a copy would (--transport tcp: the data streams,
 * which a later remote_open_* then uses) and measures round trips and
 * throughput both ways on those channels, for at most budget seconds
 * in all (out->seconds says how long it took).  A serve without the
 * probe (MSG_FEAT_PROBE): DF_NET naming the host and saying to upgrade
 * diskferry there, nothing sent.  0 or -1 (then remote_explain()).
 */
int remote_probe(struct remote *r, double budget, struct link_probe *out,
                 struct df_error *err);
/* Tell the server the job is over (it removes its resume journal). */
int remote_done(struct remote *r, bool verified, struct df_error *err);
/* Prefer the remote's own ERROR over a local "connection closed". */
void remote_explain(struct remote *r, struct df_error *err);
void remote_get_stats(const struct remote *r, struct remote_stats *st);
/* Close the session and reap ssh.  NULL is a no-op. */
void remote_close(struct remote *r);

#endif
