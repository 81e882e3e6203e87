/*
 * delivery: the client side of SMTP towards the smarthost(s).
 *
 * One `struct dsession` per connection, an explicit state machine
 * (DELIVERY_STATES in delivery_int.h: names, phrases and per-state
 * deadlines from one table), connection reuse for every ready message,
 * PIPELINING when offered, at most `concurrency` sessions (dispatch.h).
 * Every failure is a kind of delivery_trouble.h, whose recorder hands
 * outcomes to queue_outcome().
 *
 * The files, what each owns, and what it may call:
 *   delivery_session.c  the session core: the state table, session_enter()
 *                       (the only way into a state, arming its deadline),
 *                       the reply dispatch, session_io() (the only I/O
 *                       entry point) and session_top() (the only free);
 *                       calls all of the below
 *   delivery_txn.c      one transaction: MAIL/RCPT/DATA, PIPELINING, the
 *                       452 carry, the body; calls the core to send and to
 *                       enter states, delivery_trouble to record
 *   delivery_conn.c     resolve, connect (Happy Eyeballs), SOCKS5, TLS;
 *                       enters no state and fails nothing itself: it
 *                       reports where the connection stands
 *                       (session_conn()) and answers the core's questions
 *   delivery_auth.c     AUTH (password, password_command, OAuth2); returns
 *                       a named result, the core decides
 *   dispatch.c          which message goes where and when (routes,
 *                       failover, back-off, concurrency, rate_limit);
 *                       reached by the queue through its ready hook
 *   delivery_trouble.c  the failure-kind table and the only recorder of
 *                       outcomes, counters and smarthost back-off
 */
#ifndef MAILRELAY_DELIVERY_H
#define MAILRELAY_DELIVERY_H

/* Also registers dispatch with the queue (dispatch_init()). */
void delivery_init(void);
/* Abort every session without recording outcomes (shutdown). */
void delivery_shutdown(void);
/* Number of open sessions. */
unsigned delivery_sessions(void);

#endif
