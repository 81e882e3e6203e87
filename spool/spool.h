/*
 * spool: the on-disk queue, and nothing else.  Used by the daemon (store,
 * update, scan) and by the CLI's offline mode (read).
 *
 * Layout under spool_dir (mode 0710, the daemon's user and group):
 *   tmp/            files being written (envelopes, and messages larger than
 *                   SPOOL_TXN_BUF or written into a retired message's file),
 *                   and retired files; anything here at start is garbage
 *   queue/ID.msg    the message: its content (CRLF lines, not dot-stuffed),
 *                   then, for a message queued by this version, its first
 *                   envelope and a footer (the tail); never rewritten
 *   queue/ID.env    the envelope once it changed (or, for a message queued
 *                   by an older version, from the start); replaced atomically
 *   maildrop/       offline submissions by the sendmail client (1730; see maildrop.h)
 *   quarantine/     drop files that were not well-formed, and contents without
 *                   an envelope (see spool_scan())
 *   rate-window     the rate_limit windows, kept across restarts (see ratewin.h)
 *
 * One file per new message.  The content is buffered as it arrives;
 * spool_txn_prepare() writes it, the envelope (spool_env_render()) and a
 * footer, "mailrelay-tail NNNNNNNNNN\n" (SPOOL_FOOT_LEN octets, the
 * envelope's length in ten digits), as queue/ID.msg, made there in that
 * one writev, and fsyncs it; queue/ is then fsynced; only then is the
 * message acknowledged: one file written and synced once, and the
 * directory, with no rename (a rename is one more change of queue/ for
 * the flush to commit: measured, the directory's fsync after it cost
 * 135-148 us, and 40-46 us without).  Content larger than the buffer
 * (SPOOL_TXN_BUF) goes to tmp/ID.msg as it arrives instead, and that
 * file, completed the same way, is renamed into queue/ before the
 * directory's fsync; so is a message written into the file of a finished
 * one (spool_retire(), spool_txn_reuse()).  A file in queue/ whose tail is not there yet (being
 * written, or a crash before its flush) is not a queued message.  This
 * relies on what ext4 (data=ordered, the default), XFS and btrfs
 * guarantee: after a crash, a file's length never covers octets that were
 * not written, so a tail that reads back was written with all the
 * content before it.  The envelope's `size` is the content's length, so
 * the content is the first `size` octets of the file and `tail` (the
 * octets after it) is what the file holds beyond; readers never read past
 * `size`.
 *
 * The envelope's mutable state lives beside it: the first change writes
 * queue/ID.env (tmp/ID.env.new, fsync, rename, fsync queue/), which from
 * then on is the envelope; it records the tail, so the pair checks the
 * .msg's length exactly.  A message delivered at its first attempt never
 * gets an .env at all.
 *
 * A message is queued exactly when queue/ID.msg ends with a valid tail, or
 * has an .env beside it (a message queued by an older version: content
 * and envelope were written as two files, .msg renamed first).  Removal
 * unlinks the .msg first (or renames it into tmp/, spool_retire()), then
 * the .env, then fsyncs queue/ (the committer does it once per batch): a
 * crash in between leaves an .env that records a tail without its .msg,
 * which spool_scan() removes at start with a warning (nothing is left to
 * deliver); the other order
 * would let the tail's first envelope send the message again.  At start,
 * spool_scan() also moves a .msg without .env and without a tail to
 * quarantine/: it was never acknowledged (a crash before the flush of a
 * new message written into queue/, or an older version's crash between
 * its two renames), or it was cut short since.  An .env of the two-file
 * layout without its .msg stays, shown as damaged, content missing.
 * Envelope updates write tmp/ID.env.new, fsync, rename over queue/ID.env.
 * With these orders every crash leaves each acknowledged message fully
 * queued or fully delivered: never lost, never sent again from a state
 * it had left.
 *
 * Queue ids: 16 characters of [0-9A-F]: 8 hex digits of the arrival time in
 * seconds, 5 of microseconds, 3 of a per-process sequence.  They sort by
 * arrival; the daemon is the only allocator and creates files with O_EXCL.
 *
 * Envelope file (text, one record per line, fields separated by TAB;
 * field values never contain TAB, CR or LF — spool_env_render(), through
 * which every writer goes, replaces them by spaces):
 *   mailrelay-env 2
 *   id        <ID>
 *   arrival   <unix seconds>.<microseconds>
 *   sender    <address, empty for the null sender>
 *   uid       <submitting uid>
 *   via       sendmail|smtp|maildrop
 *   size      <octets of content: the first octets of queue/ID.msg>
 *   tail      <octets of queue/ID.msg after the content>   (only when not 0)
 *   body      7BIT|8BITMIME
 *   held      0|1
 *   dsn       <RET: FULL|HDRS|empty> <ENVID, xtext as received>   (only when given)
 *   smtputf8  1                                    (only when the client asked for it)
 *   drop      <name of the maildrop file it was imported from>   (only for those: a crash
 *             before the drop was removed must not import it twice, see daemon/pickup.c)
 *   warned    1                                    (the delay notice went out)
 *   notice    <rcpt index>                         (a "relayed" notice is owed for it)
 *   reported  <rcpt index>                         (its failure or relayed notice is queued)
 *   rstatus   <rcpt index> <enhanced status>       (of its last outcome, as decided then: a
 *             notice reports it as it is, never derived again from the reply's text)
 *   rkind     <rcpt index> <failure kind>          (of its last outcome, lib/trouble.h's name:
 *             `mailrelay show` prints the kind's sentence and hint)
 *   attempt   <unix time> <rcpt index> <sent|deferred|bounced> <relay> <reply>   (history, oldest first)
 *   rcpt      <status> <attempts> <next_attempt> <last_attempt> <address> <orig> <last_reply>
 *             [<NOTIFY as given> <ORCPT, xtext as received>]   (both or neither)
 *   end       <number of rcpt records>             (always the last line)
 * Unknown record names are ignored (forward compatibility).
 *
 * Damage.  A message is damaged when its envelope does not parse, when a
 * version 2 envelope lacks its end record (cut short: recipients would be
 * lost without a trace), has anything after it or a recipient count that
 * differs, or when queue/ID.msg is missing or not exactly `size` + `tail`
 * octets (both are set by spool_txn_prepare() from what was written, so
 * they are exact), or when a .msg's tail does not hold a valid envelope
 * for that content.  spool_env_load() and spool_scan() report such a message with a
 * stand-in envelope whose `damaged` says what is wrong; the daemon holds
 * it, never delivers or removes it on its own, and an admin may delete it.
 * Nothing is ever written over a damaged message's envelope: the files
 * stay as they were found, for repair.
 *
 * Version 1 envelopes (written before the end record existed) have no end
 * record and are read as before; their size is checked like any other
 * (every writer has always recorded the exact length).  The next update of
 * such a message writes it as version 2.
 */
#ifndef MAILRELAY_SPOOL_H
#define MAILRELAY_SPOOL_H

#include <stddef.h>
#include <stdio.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>

#define QID_LEN 16
#define SPOOL_TXN_BUF (16 * 1024) /* content buffered by a transaction before a write */
#define SPOOL_FOOT_LEN 26       /* "mailrelay-tail " + 10 digits + "\n" */
#define SPOOL_FREE_SUFFIX ".free" /* tmp/ID.free: a finished message's file, kept (spool_retire()) */

enum rcpt_status { RCPT_PENDING = 0, RCPT_SENT, RCPT_FAILED };

/*
 * The daemon holds one of these per recipient of every queued message,
 * and a struct spool_env per message: their sizes are most of a large
 * queue's memory (flags are bits, absent strings NULL).
 */
struct spool_rcpt {
	char *addr;             /* envelope recipient */
	char *orig;             /* as submitted (before aliases), NULL when the same as addr */
	enum rcpt_status status:2;
	unsigned success_notice:1;      /* sent with NOTIFY=SUCCESS to a smarthost without DSN: we report it */
	unsigned reported:1;    /* the notice of its failure (or relaying) is on disk */
	unsigned reporting:1;   /* that notice is being queued (daemon memory only, never written) */
	unsigned attempts;
	time_t next_attempt;    /* 0 = now */
	time_t last_attempt;    /* 0 = never */
	char *last_reply;       /* "" when none */
	char notify[24];        /* DSN NOTIFY= as submitted ("SUCCESS,FAILURE,DELAY" at most), "" when absent */
	char *orcpt;            /* DSN ORCPT= as submitted (xtext), NULL when absent */
	char dsn[16];           /* enhanced status of its last outcome ("4.4.7"), "" when none */
	char kind[24];          /* failure kind of its last outcome (trouble.h: "TIMEOUT"), "" when none */
};

/* One delivery attempt of one recipient, for `mailrelay show`. */
struct spool_attempt {
	time_t when;
	unsigned rcpt;          /* index into rcpts */
	char outcome[12];       /* sent, deferred, bounced */
	char *relay;            /* "host[addr]:port" or "none" */
	char *reply;
};
#define SPOOL_HISTORY_MAX 50    /* attempts kept per message (the latest) */
#define SPOOL_DAMAGED_MAX 200   /* the longest reason a message is damaged (octets, with the NUL) */

struct spool_env {
	char id[QID_LEN + 1];
	char ret[5];            /* DSN RET=FULL|HDRS, "" when absent */
	char via[16];
	time_t arrival;
	long arrival_usec;
	char *sender;           /* "" for <> */
	uid_t uid;
	unsigned eightbit:1;    /* BODY=8BITMIME */
	unsigned smtputf8:1;    /* SMTPUTF8 given at submission */
	unsigned held:1;
	unsigned warned:1;      /* the delay notice (delay_warning) was sent */
	unsigned env_file:1;    /* queue/ID.env is there or being written (memory only: the removal
	                           need not unlink one a message never had) */
	unsigned long long size;        /* octets of content */
	unsigned long long tail;        /* octets of queue/ID.msg after the content (0: none) */
	char *envid;            /* DSN ENVID= (xtext, at most 100 octets), NULL when absent */
	char *drop;             /* the maildrop file imported, NULL for other paths */
	struct spool_rcpt *rcpts;
	size_t nrcpt;
	struct spool_attempt *hist;     /* oldest first, at most SPOOL_HISTORY_MAX */
	size_t nhist;
	char *damaged;          /* why the message is damaged, NULL when intact; never written */
};

struct spool {
	char *dir;
	int dirfd, queuefd, tmpfd;
	unsigned qid_seq;       /* sequence of the ids made by spool_qid_new() */
	int no_history;         /* envelopes are read without their attempt records (spool_scan()) */
	int qid_known;          /* qid_high holds every id in queue/ (the daemon's start-up scan) */
	unsigned long long qid_high;    /* the highest id seen or made, as a number (16 hex digits) */
};

/* A new message being written. */
struct spool_txn {
	struct spool *sp;
	char id[QID_LEN + 1];
	int msgfd;
	unsigned long long size;	/* the content so far, written or buffered */
	int in_queue;           /* the file was made in queue/ (the content fit the buffer), not tmp/ */
	char reuse[QID_LEN + 1];        /* a retired message's tmp/ID.free to write into ("": none; spool_txn_reuse()) */
	int failed;             /* a write failed; errno kept in err */
	int err;
	/*
	 * The content not yet written (SPOOL_TXN_BUF at most): a small
	 * message reaches the file in the one writev that also writes its
	 * envelope (spool_txn_prepare()).  Owned like msgfd: a copy of the
	 * struct takes it over.
	 */
	char *buf;
	size_t blen;
};

const char *rcpt_status_name(enum rcpt_status s);

int  spool_qid_valid(const char *s);
/* Build an id from a time and a sequence number (only the low 12 bits are used). */
void spool_qid_make(char out[QID_LEN + 1], time_t sec, long usec, unsigned seq);
/*
 * A new queue id for a message arriving now (arrival: the time it is made
 * from), unique by time and sequence, sortable by arrival.  The one
 * allocator of every submission path (SMTP, maildrop, bounces); checked
 * against the queue directory, so a clock stepping back cannot reuse an id,
 * unless it is higher than every id the daemon's start-up scan found and
 * every id made since (qid_known): no file can have it.
 */
void spool_qid_new(struct spool *sp, char out[QID_LEN + 1], struct timeval *arrival);

/* Open (and with create, make the subdirectories of) a spool.  -1 with errbuf on failure. */
int  spool_open(struct spool *sp, const char *dir, int create, char *errbuf, size_t errlen);
void spool_close(struct spool *sp);

/* Remove leftovers in tmp/.  Called by the daemon at start only. */
void spool_clean_tmp(struct spool *sp);

int  spool_txn_begin(struct spool *sp, const char *id, struct spool_txn *txn);
/* Append content; errors are sticky and reported by spool_txn_prepare(). */
void spool_txn_write(struct spool_txn *txn, const void *buf, size_t len);
/*
 * Pass the content written so far through fn, which returns a
 * replacement (allocated; *outlen set) or NULL to keep it.  Returns 1 when
 * replaced, 0 when kept, -1 on error (the transaction is then failed).
 */
typedef char *(*spool_filter_fn)(const char *content, size_t len, size_t *outlen, void *arg);
int  spool_txn_filter(struct spool_txn *txn, spool_filter_fn fn, void *arg);
/*
 * Append the envelope and the footer to the content; with sync, fsync the
 * file.  Without sync the caller must make the data durable another way
 * (spool_syncfs() once for a batch: group commit) before
 * spool_txn_publish().  Blocking: call off the event loop.  env->size is
 * set to the octets of content written and env->tail to what follows:
 * the lengths every delivery checks.
 */
int  spool_txn_prepare(struct spool_txn *txn, struct spool_env *env, int sync,
    char *errbuf, size_t errlen);
/* Rename the file into queue/.  The caller then calls spool_sync_queue() once per batch. */
int  spool_txn_publish(struct spool_txn *txn, char *errbuf, size_t errlen);
void spool_txn_abort(struct spool_txn *txn);
/*
 * Write the message, if its content fits the buffer, into the file of a
 * retired message (spool_retire()), tmp/OLD.free, rather than a new one:
 * spool_txn_prepare() writes it from its start and cuts it to length,
 * and spool_txn_publish() renames it into queue/ as the new message's.
 * No inode is made, and none freed at the old message's removal: on the
 * machine measured, a batch of four new messages and four removals took
 * 3.4-4.2 ms this way against 11-16 ms with a create and an unlink each
 * (the disk busy), the unlinks' freeing of blocks being most of it.
 * Only a file whose retirement is durable (queue/ fsynced since) may be
 * given: written into while its rename out of queue/ could still be
 * undone by a crash, the old message would come back with the new
 * octets.  A file that cannot be opened is left for a new one.  1 when
 * taken, 0 when the content has a file already (larger than the buffer).
 */
int  spool_txn_reuse(struct spool_txn *txn, const char *old_id);
/* fsync the queue directory. */
int  spool_sync_queue(struct spool *sp);
/* Flush every dirty file of the spool's file system (syncfs): one flush for a whole batch. */
int  spool_syncfs(struct spool *sp);

/*
 * The spool's small state files (rate-window, unreached), each replaced
 * whole: created as tmp/NAME (a stdio stream, NULL with errno on error),
 * then published, which closes the stream and renames the file into
 * spool_dir (with sync: fsynced before, and the directory after), or on
 * any error removes it and returns -1 with errno.  Read whole: 1 with
 * *buf (allocated) and *len, 0 when there is none, -1 with errno when it
 * cannot be read or is larger than max (EINVAL).
 */
FILE *spool_state_create(struct spool *sp, const char *name);
int   spool_state_publish(struct spool *sp, FILE *f, const char *name, int sync);
int   spool_state_read(struct spool *sp, const char *name, size_t max, char **buf, size_t *len);

/*
 * Atomically replace an envelope in two steps: stage (write tmp/ID.env.new,
 * fsync it when sync) and install (rename over queue/ID.env).  The queue
 * directory fsync is the caller's, once per batch.  spool_env_write() does
 * both steps with fsyncs, for single updates.
 */
int  spool_env_stage(struct spool *sp, const struct spool_env *env, int sync, char *errbuf, size_t errlen);
/*
 * Stage an update of an envelope whose history is kept on disk only (the
 * daemon holds none in memory): text is the envelope rendered without
 * attempt records; the attempts queue/ID.env holds now are kept, hist[0..
 * nhist) (the attempts made since) follow them, and the latest
 * SPOOL_HISTORY_MAX are written before the end record.  An .env that
 * cannot be read (or none: a one-file message's first change) has no
 * attempts to keep.
 */
int  spool_env_stage_update(struct spool *sp, const char *id, const char *text, size_t len,
    const struct spool_attempt *hist, size_t nhist, int sync, char *errbuf, size_t errlen);
int  spool_env_install(struct spool *sp, const char *id, char *errbuf, size_t errlen);
int  spool_env_write(struct spool *sp, const struct spool_env *env, int sync_dir, char *errbuf, size_t errlen);
/*
 * The envelope as the file holds it (allocated; *lenp set): the one
 * renderer every writer uses, so every envelope written ends with its end
 * record.  A damaged envelope is never written: the writers refuse it.
 */
char *spool_env_render(const struct spool_env *env, size_t *lenp);
/*
 * Read a queued message's envelope: queue/ID.env when there is one, else
 * the one queue/ID.msg holds in its tail.  -1 with errno ENOENT when
 * neither is there (not queued: no .msg, or a .msg without .env or tail),
 * another errno when what is there does not read or parse.
 */
int  spool_env_read(struct spool *sp, const char *id, struct spool_env *env, char *errbuf, size_t errlen);
/*
 * The envelope in a one-file message's tail: buf holds the last len
 * octets of a file of fsize octets (at least the footer and the envelope
 * it announces).  0 with env set (env->size and env->tail add up to
 * fsize); -1 with errbuf and errno ENOENT when the last octets are not a
 * footer, EBADMSG when the tail does not hold a valid envelope for the
 * content before it.  Used by spool_env_read() and the fuzzer.
 */
int  spool_tail_parse(const char *buf, size_t len, unsigned long long fsize, struct spool_env *env,
    char *errbuf, size_t errlen);
/* Parse an envelope from memory (used by spool_env_read and the fuzzer). */
int  spool_env_parse(const char *buf, size_t len, struct spool_env *env, char *errbuf, size_t errlen);
/*
 * Is the content of an intact envelope there and exactly env->size octets?
 * fd: the content already open (checked is what will be read), or -1 to
 * look it up by name.  0 when it is, -1 with errbuf saying what is wrong.
 */
int  spool_msg_check(struct spool *sp, const struct spool_env *env, int fd, char *errbuf, size_t errlen);
/*
 * Read a queued message's envelope and check its content: 0 intact; 1
 * damaged, env then being a stand-in (id, arrival and usec from the id,
 * size of the content file or 0, sender "", no recipients) with
 * env->damaged saying why; -1 not queued (no envelope, or an invalid id).
 */
int  spool_env_load(struct spool *sp, const char *id, struct spool_env *env, char *errbuf, size_t errlen);
void spool_env_free(struct spool_env *env);
/* Say why the message is damaged (at most SPOOL_DAMAGED_MAX - 1 octets kept). */
void spool_env_set_damaged(struct spool_env *env, const char *why);
/* Free the history (the envelope keeps the rest). */
void spool_env_clear_hist(struct spool_env *env);
/* A new last attempt, zeroed (the oldest is dropped beyond SPOOL_HISTORY_MAX). */
struct spool_attempt *spool_env_new_attempt(struct spool_env *env);
/* Append to the history (the oldest is dropped beyond SPOOL_HISTORY_MAX). */
void spool_env_add_attempt(struct spool_env *env, time_t when, unsigned rcpt, const char *outcome,
    const char *relay, const char *reply);
/* Deep copy (snapshots handed to the committer). */
void spool_env_copy(struct spool_env *dst, const struct spool_env *src);

/* Open the content for reading (O_RDONLY); -1 on error. */
int  spool_msg_open(struct spool *sp, const char *id);
/*
 * The content, or its first max octets (allocated; *len set), never more
 * than env->size; NULL when it cannot be read.
 */
char *spool_msg_read(struct spool *sp, const struct spool_env *env, size_t max, size_t *len);
/* Remove a message (.msg first, then .env) and fsync the queue directory when sync_dir. */
int  spool_remove(struct spool *sp, const char *id, int sync_dir);
/* The same without the directory fsync; without has_env the .env is not looked for (env_file). */
int  spool_remove_known(struct spool *sp, const char *id, int has_env);
/*
 * Remove a message as spool_remove_known() does, but keep the file of its
 * .msg: renamed to tmp/ID.free, for spool_txn_reuse() once queue/ is
 * fsynced, or spool_unlink_retired().  Anything left in tmp/ at the next
 * start is removed there (spool_clean_tmp()).  1 when the file was kept,
 * 0 when there was no .msg, -1 on error.
 */
int  spool_retire(struct spool *sp, const char *id, int has_env);
void spool_unlink_retired(struct spool *sp, const char *id);

/*
 * Visit every queued message in id (arrival) order, as spool_env_load()
 * reads it: damaged ones too, with their stand-in (env->damaged set; the
 * caller says so, spool_scan() does not log).  flags: SPOOL_SCAN_NO_HISTORY,
 * the envelopes are read without their attempt records (the daemon's load:
 * it keeps none in memory); SPOOL_SCAN_REMOVE_ORPHANS (the
 * daemon at start), a .msg with neither .env nor tail (never
 * acknowledged) is moved to quarantine/, and an .env that records a tail
 * without its .msg (a removal cut short) is removed, each with a log
 * line; without it, the first is passed over and the second shown as
 * damaged.  The env passed to the
 * callback is freed after it returns unless the callback returns 1 (it
 * then owns it).  Returns the number visited, -1 if the queue can't be read.
 */
typedef int (*spool_scan_fn)(struct spool_env *env, void *arg);
#define SPOOL_SCAN_REMOVE_ORPHANS 1
#define SPOOL_SCAN_NO_HISTORY     2
int  spool_scan(struct spool *sp, int flags, spool_scan_fn fn, void *arg);

#endif
