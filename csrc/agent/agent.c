/* msb-agent: PID 1 of a sandbox. Serves one exec per connection with the framed protocol of
 * docs/protocol.md, on a Unix stream socket (namespace backend) or on the multiplexed virtio-console
 * channel (microVM, channel.c and vminit.c). Each connection gets its own session process, which starts
 * the command in a new session (its own process group), relays stdin/stdout/stderr as frames and
 * reports the exit status; PID 1 itself only accepts connections and reaps orphans. Built static
 * so it runs in any image. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "protocol.h"

extern char **environ;

/* ---- frame I/O ------------------------------------------------------------------------------ */

int read_full(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int write_full(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_frame(int fd, uint8_t type, const void *payload, uint32_t len) {
    uint8_t head[5];
    uint32_t total = len + 1;
    memcpy(head, &total, 4); /* little-endian hosts only: x86-64 and arm64 */
    head[4] = type;
    if (write_full(fd, head, 5)) return -1;
    return len ? write_full(fd, payload, len) : 0;
}

static void send_error(int fd, const char *fmt, const char *detail) {
    char msg[512];
    snprintf(msg, sizeof msg, fmt, detail ? detail : "");
    send_frame(fd, MSB_FRAME_ERROR, msg, (uint32_t)strlen(msg));
}

/* Returns the payload length, or -1 on EOF, -2 on a malformed header. */
static long read_frame(int fd, uint8_t *type, uint8_t **payload) {
    uint8_t head[5];
    uint32_t total;
    if (read_full(fd, head, 5)) return -1;
    memcpy(&total, head, 4);
    if (total < 1 || total > MSB_MAX_PAYLOAD + 1) return -2;
    *type = head[4];
    *payload = malloc(total);
    if (!*payload) return -2;
    if (total > 1 && read_full(fd, *payload, total - 1)) {
        free(*payload);
        return -1;
    }
    return (long)total - 1;
}

/* ---- EXEC request --------------------------------------------------------------------------- */

struct request {
    char **argv, **envp, *cwd, *user;
};

struct cursor {
    const uint8_t *p;
    size_t left;
};

static int take_u32(struct cursor *c, uint32_t *v) {
    if (c->left < 4) return -1;
    memcpy(v, c->p, 4);
    c->p += 4;
    c->left -= 4;
    return 0;
}

static char *take_string(struct cursor *c) {
    uint32_t n;
    if (take_u32(c, &n) || n > MSB_MAX_STRING || n > c->left || memchr(c->p, 0, n)) return NULL;
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, c->p, n);
    s[n] = 0;
    c->p += n;
    c->left -= n;
    return s;
}

static char **take_list(struct cursor *c, uint32_t min, uint32_t max) {
    uint32_t n;
    if (take_u32(c, &n) || n < min || n > max) return NULL;
    char **list = calloc(n + 1, sizeof *list);
    for (uint32_t i = 0; list && i < n; i++)
        if (!(list[i] = take_string(c))) return NULL;
    return list;
}

static const char *parse_request(const uint8_t *payload, size_t len, struct request *req) {
    struct cursor c = {payload, len};
    if (!(req->argv = take_list(&c, 1, MSB_MAX_ARGS))) return "bad argv";
    if (!(req->envp = take_list(&c, 0, MSB_MAX_ARGS))) return "bad environment";
    if (!(req->cwd = take_string(&c))) return "bad cwd";
    if (!(req->user = take_string(&c))) return "bad user";
    if (c.left) return "trailing bytes after the request";
    return NULL;
}

/* ---- users ---------------------------------------------------------------------------------- */

/* Looks `name` up in an /etc/passwd- or /etc/group-style file: field 2 (0-based) is the id and,
 * for passwd, field 3 the primary group. */
static int lookup(const char *file, const char *name, long *id, long *gid) {
    FILE *f = fopen(file, "re");
    char line[1024];
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        char *fields[4] = {0};
        char *save = NULL, *tok = strtok_r(line, ":", &save);
        for (int i = 0; tok && i < 4; i++, tok = strtok_r(NULL, ":", &save)) fields[i] = tok;
        if (fields[0] && fields[2] && strcmp(fields[0], name) == 0) {
            *id = strtol(fields[2], NULL, 10);
            if (gid && fields[3]) *gid = strtol(fields[3], NULL, 10);
            fclose(f);
            return 0;
        }
    }
    fclose(f);
    return -1;
}

static int numeric(const char *s, long *v) {
    char *end;
    if (!*s) return -1;
    *v = strtol(s, &end, 10);
    return *end || *v < 0 ? -1 : 0;
}

/* "uid", "uid:gid", "name" or "name:group"; a user without a group takes its passwd group (0 when
 * a numeric uid has no passwd entry, as runc does). */
static const char *resolve_user(char *spec, uid_t *uid, gid_t *gid) {
    long u = 0, g = 0;
    char *group = strchr(spec, ':');
    if (group) *group++ = 0;
    if (*spec && numeric(spec, &u) && lookup("/etc/passwd", spec, &u, &g)) return "an unknown user";
    if (group && *group && numeric(group, &g) && lookup("/etc/group", group, &g, NULL)) return "an unknown group";
    *uid = (uid_t)u;
    *gid = (gid_t)g;
    return NULL;
}

/* ---- one session ---------------------------------------------------------------------------- */

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* Starts the command; returns its pid, or -1 after sending ERROR. */
static pid_t spawn(int conn, struct request *req, int in[2], int out[2], int err[2]) {
    uid_t uid;
    gid_t gid;
    const char *bad = resolve_user(req->user, &uid, &gid);
    if (bad) {
        send_error(conn, "cannot run as %s", bad);
        return -1;
    }
    int status[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(status, O_CLOEXEC)) {
        send_error(conn, "cannot create pipes%s", "");
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        const char *step = "setsid";
        if (setsid() < 0) goto fail;
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        signal(SIGPIPE, SIG_DFL);
        step = "cwd";
        if (chdir(*req->cwd ? req->cwd : "/")) goto fail;
        step = "user";
        if (setgroups(0, NULL) || setgid(gid) || setuid(uid)) goto fail;
        step = "exec";
        environ = req->envp;
        execvp(req->argv[0], req->argv);
    fail: {
            int e = errno;
            write_full(status[1], &e, sizeof e);
            write_full(status[1], step, strlen(step));
            _exit(127);
        }
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    close(status[1]);
    char report[64] = {0};
    ssize_t got = pid > 0 ? read(status[0], report, sizeof report - 1) : -1;
    close(status[0]);
    if (pid < 0 || got > 0) {
        int e;
        memcpy(&e, report, sizeof e);
        char detail[256];
        snprintf(detail, sizeof detail, "%s (%s) for %s", strerror(e), report + sizeof e, req->argv[0]);
        if (pid > 0) waitpid(pid, NULL, 0);
        send_error(conn, "cannot start the command: %s", detail);
        return -1;
    }
    uint32_t p32 = (uint32_t)pid;
    send_frame(conn, MSB_FRAME_STARTED, &p32, 4);
    return pid;
}

/* stdin bytes received from the host but not yet taken by the command */
struct pending {
    uint8_t *buf;
    size_t len;
    int eof; /* close the command's stdin once buf is drained */
};

static int handle_input(int conn, pid_t pid, int *stdin_fd, struct pending *in) {
    uint8_t type, *payload;
    long n = read_frame(conn, &type, &payload);
    if (n == -1) return -1; /* the host went away */
    if (n == -2) {
        send_error(conn, "malformed frame%s", "");
        return -1;
    }
    int rc = 0;
    if (type == MSB_FRAME_STDIN && *stdin_fd >= 0) {
        uint8_t *grown = realloc(in->buf, in->len + (size_t)n);
        if (!grown) rc = -1;
        else {
            memcpy(grown + in->len, payload, (size_t)n);
            in->buf = grown;
            in->len += (size_t)n;
        }
    } else if (type == MSB_FRAME_STDIN) {
        /* the command already closed its stdin: drop the bytes, as a pipe would */
    } else if (type == MSB_FRAME_STDIN_EOF) {
        in->eof = 1;
    } else if (type == MSB_FRAME_SIGNAL && n == 4) {
        uint32_t sig;
        memcpy(&sig, payload, 4);
        if (sig == 0 || sig > 64) {
            send_error(conn, "bad signal number%s", "");
            rc = -1;
        } else {
            kill(-pid, (int)sig);
        }
    } else {
        send_error(conn, "unexpected frame after EXEC%s", "");
        rc = -1;
    }
    free(payload);
    return rc;
}

static void session(int conn) {
    uint8_t type, *payload;
    long n = read_frame(conn, &type, &payload);
    if (n < 0 || type != MSB_FRAME_EXEC) {
        send_error(conn, "the first frame must be a well-formed EXEC%s", "");
        return;
    }
    struct request req;
    const char *bad = parse_request(payload, (size_t)n, &req);
    if (bad) {
        send_error(conn, "malformed EXEC: %s", bad);
        return;
    }
    int in[2], out[2], err[2];
    pid_t pid = spawn(conn, &req, in, out, err);
    if (pid < 0) return;
    int stdin_fd = in[1];
    set_nonblock(stdin_fd);
    struct pending pend = {NULL, 0, 0};
    int fds[2] = {out[0], err[0]};
    static uint8_t buf[65536];
    int open_streams = 2, host_gone = 0;
    while (open_streams && !host_gone) {
        if (stdin_fd >= 0 && pend.eof && pend.len == 0) {
            close(stdin_fd);
            stdin_fd = -1;
        }
        struct pollfd p[4] = {{conn, POLLIN, 0}, {fds[0], POLLIN, 0}, {fds[1], POLLIN, 0},
                              {stdin_fd, pend.len ? POLLOUT : 0, 0}};
        if (poll(p, stdin_fd >= 0 ? 4 : 3, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR) && handle_input(conn, pid, &stdin_fd, &pend)) host_gone = 1;
        for (int i = 0; i < 2; i++) {
            if (fds[i] < 0 || !(p[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t r = read(fds[i], buf, sizeof buf);
            if (r > 0) {
                if (send_frame(conn, i ? MSB_FRAME_STDERR : MSB_FRAME_STDOUT, buf, (uint32_t)r)) host_gone = 1;
            } else if (r == 0 || errno != EAGAIN) {
                close(fds[i]);
                fds[i] = -1;
                p[i + 1].fd = -1;
                open_streams--;
            }
        }
        if (stdin_fd >= 0 && p[3].revents & (POLLOUT | POLLERR)) {
            ssize_t w = write(stdin_fd, pend.buf, pend.len);
            if (w > 0) {
                memmove(pend.buf, pend.buf + w, pend.len - (size_t)w);
                pend.len -= (size_t)w;
            } else if (w < 0 && errno != EAGAIN) { /* the command closed its stdin */
                pend.len = 0;
                pend.eof = 1;
            }
        }
    }
    if (host_gone) kill(-pid, SIGKILL);
    if (stdin_fd >= 0) close(stdin_fd);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (host_gone) return;
    int32_t result[2];
    if (WIFSIGNALED(status)) {
        result[1] = WTERMSIG(status);
        result[0] = 128 + result[1];
    } else {
        result[0] = WEXITSTATUS(status);
        result[1] = 0;
    }
    send_frame(conn, MSB_FRAME_EXIT, result, sizeof result);
}

/* Ends a connection so that the host reads every frame sent: closing with unread input would make
 * the kernel answer with a reset, which can destroy a final ERROR frame still in flight. */
static void graceful_close(int conn) {
    char sink[4096];
    shutdown(conn, SHUT_WR);
    for (int rounds = 0; rounds < 256; rounds++) {
        struct pollfd p = {conn, POLLIN, 0};
        if (poll(&p, 1, 1000) <= 0 || read(conn, sink, sizeof sink) <= 0) break;
    }
    close(conn);
}

/* ---- PID 1 ---------------------------------------------------------------------------------- */

static void reap(int sig) {
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
    errno = saved;
}

pid_t fork_session(int conn, const int *close_in_child, size_t n) {
    pid_t pid = fork();
    if (pid == 0) {
        for (size_t i = 0; i < n; i++) close(close_in_child[i]);
        struct sigaction dfl = {0};
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGCHLD, &dfl, NULL);
        session(conn);
        graceful_close(conn);
        _exit(0);
    }
    return pid;
}

static int listen_on(const char *path) {
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) {
        fprintf(stderr, "msb-agent: socket path too long\n");
        return -1;
    }
    strcpy(addr.sun_path, path);
    unlink(path);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 128)) {
        perror("msb-agent: listen");
        return -1;
    }
    return lfd;
}

/* Waits until `fd` reads end-of-file (every writer gone: the sandbox's creator ended, however it
 * ended), then becomes `program`, which tears the sandbox down. Costs nothing while it waits. */
static int on_eof(int fd, char **program) {
    char buf[64];
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) != 0)
        if (r < 0 && errno != EINTR) break;
    close(fd);
    execv(program[0], program);
    perror("msb-agent: exec");
    return 127;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "--on-eof") == 0) return on_eof(atoi(argv[2]), argv + 3);
    int vm = argc == 2 && strcmp(argv[1], "--vm") == 0;
    int listen_mode = argc == 3 && strcmp(argv[1], "--listen") == 0;
    int fd_mode = argc == 3 && strcmp(argv[1], "--channel-fd") == 0;
    if (!vm && !listen_mode && !fd_mode) {
        fprintf(stderr, "usage: msb-agent --listen SOCKET | --channel-fd FD | --vm | --on-eof FD PROGRAM [ARG...]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {0};
    sa.sa_handler = reap;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    if (vm || fd_mode) {
        int fd = vm ? vm_init() : atoi(argv[2]);
        if (fd < 0) return 1;
        return serve_channel(fd) ? 1 : 0;
    }
    int lfd = listen_on(argv[2]);
    if (lfd < 0) return 1;
    for (;;) {
        int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) continue;
        fork_session(conn, &lfd, 1);
        close(conn);
    }
}
