/* What the agent's parts share: frame I/O, the per-connection session, and the two ways PID 1
 * serves connections (a Unix socket in the namespace backend, the multiplexed virtio-console
 * channel in the microVM). */
#ifndef MSB_AGENT_H
#define MSB_AGENT_H

#include <stddef.h>
#include <sys/types.h>

int read_full(int fd, void *buf, size_t n);
int write_full(int fd, const void *buf, size_t n);
/* Forks a session process serving one protocol connection on `conn`; the child first closes
 * `close_in_child[0..n)` (descriptors of other connections it must not hold open). */
pid_t fork_session(int conn, const int *close_in_child, size_t n);
/* Serves multiplexed connections on the stream `fd` (docs/protocol.md, "The microVM channel")
 * until it ends; returns 0 on a clean end of stream, -1 on a protocol error. */
int serve_channel(int fd);
/* PID 1 in the microVM: mounts the image's root and the writable upper, switches into it and
 * returns the console channel's descriptor (or -1 after printing why not). */
int vm_init(void);

#endif
