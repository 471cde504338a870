/* The microVM channel: many protocol connections multiplexed over one byte stream (the guest's
 * /dev/hvc0). Each message is {u32 channel, u32 length, length bytes}; the host opens a channel by
 * sending on a new id, length 0 closes one in either direction, and channel 0 is the agent's own
 * (it says "ready" once serving). Every channel is a socketpair to its own session process, so the
 * sessions are exactly those of the Unix-socket mode.
 *
 * Flow control: input for a session that is not reading is held (one message at most) and the
 * channel is not read meanwhile, but session output keeps flowing, so a session blocked on
 * writing its output never deadlocks against input waiting for it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"

#define MAX_CHANNELS 256
#define MAX_MESSAGE 65536u

struct channel {
    uint32_t id;
    int fd;            /* our end of the session's socketpair, non-blocking */
};

static struct channel channels[MAX_CHANNELS];
static int n_channels;

/* Input read from the stream that the target session has not taken yet. */
static struct {
    uint32_t id, len, off;
    uint8_t data[MAX_MESSAGE];
} held;

static int send_message(int out, uint32_t id, const void *data, uint32_t len) {
    uint32_t head[2] = {id, len}; /* little-endian hosts only, like the frames */
    if (write_full(out, head, sizeof head)) return -1;
    return len ? write_full(out, data, len) : 0;
}

static int find(uint32_t id) {
    for (int i = 0; i < n_channels; i++)
        if (channels[i].id == id) return i;
    return -1;
}

static void drop(int i) {
    close(channels[i].fd);
    if (held.len && held.id == channels[i].id) held.len = 0;
    channels[i] = channels[--n_channels];
}

static int open_channel(int stream, uint32_t id) {
    int sv[2];
    if (n_channels == MAX_CHANNELS || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return -1;
    int inherited[MAX_CHANNELS + 2];
    size_t n = 0;
    inherited[n++] = stream;
    inherited[n++] = sv[0];
    for (int i = 0; i < n_channels; i++) inherited[n++] = channels[i].fd;
    if (fork_session(sv[1], inherited, n) < 0) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    close(sv[1]);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    channels[n_channels] = (struct channel){id, sv[0]};
    return n_channels++;
}

/* Reads one message from the stream into `held` (or acts on it); 0 at a clean end, -1 on error. */
static int take_message(int stream) {
    uint32_t head[2];
    ssize_t r;
    do r = read(stream, head, 1);
    while (r < 0 && errno == EINTR);
    if (r == 0) return 0;
    if (r < 0 || read_full(stream, (uint8_t *)head + 1, sizeof head - 1)) return -1;
    uint32_t id = head[0], len = head[1];
    if (len > MAX_MESSAGE || id == 0) return -1;
    if (len && read_full(stream, held.data, len)) return -1;
    int i = find(id);
    if (len == 0) {
        if (i >= 0) drop(i);
        return 1;
    }
    if (i < 0 && (i = open_channel(stream, id)) < 0) return send_message(stream, id, NULL, 0) ? -1 : 1;
    held.id = id;
    held.len = len;
    held.off = 0;
    return 1;
}

/* Gives held input to its session as far as it takes it now. */
static void deliver(int i) {
    while (held.off < held.len) {
        ssize_t w = write(channels[i].fd, held.data + held.off, held.len - held.off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) return;
        if (w <= 0) { /* the session is gone; its own close message follows from the read side */
            held.off = held.len;
            break;
        }
        held.off += (uint32_t)w;
    }
    held.len = 0;
}

/* Forwards what a session wrote; on its end, tells the host and forgets the channel. */
static int forward(int stream, int i) {
    static uint8_t buf[MAX_MESSAGE];
    ssize_t r = read(channels[i].fd, buf, sizeof buf);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) return 0;
    if (r > 0) return send_message(stream, channels[i].id, buf, (uint32_t)r);
    uint32_t id = channels[i].id;
    drop(i);
    return send_message(stream, id, NULL, 0);
}

int serve_channel(int stream) {
    if (send_message(stream, 0, "ready", 5)) return -1;
    struct pollfd p[MAX_CHANNELS + 1];
    for (;;) {
        int target = held.len ? find(held.id) : -1;
        if (held.len && target < 0) held.len = 0;
        p[0] = (struct pollfd){stream, held.len ? 0 : POLLIN, 0};
        for (int i = 0; i < n_channels; i++)
            p[i + 1] = (struct pollfd){channels[i].fd, POLLIN | (i == target ? POLLOUT : 0), 0};
        int n = n_channels;
        if (poll(p, (nfds_t)n + 1, -1) < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (target >= 0 && (p[target + 1].revents & (POLLOUT | POLLERR | POLLHUP))) deliver(target);
        /* from the end backwards, so that dropping channel i (swapping in the last) skips none */
        for (int i = n - 1; i >= 0; i--)
            if (p[i + 1].revents & (POLLIN | POLLHUP | POLLERR) && forward(stream, i)) return -1;
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            int rc = take_message(stream);
            if (rc <= 0) {
                while (n_channels) drop(0); /* the host is gone: every session ends with it */
                return rc;
            }
            int i = held.len ? find(held.id) : -1;
            if (i >= 0) deliver(i);
        }
    }
}
