/* PID 1 in the microVM, started from the monitor's initramfs: the image's stitched disk is
 * /dev/vda (fsmeta EROFS whose chunks point into the layer extents), the writable upper is
 * /dev/vdb (ext4) when the sandbox has one and tmpfs otherwise; overlayfs joins them into the root
 * it switches to. Progress goes to the kernel console, where the monitor timestamps it.
 *
 * The kernel command line hands init its unknown key=value words as environment; msb_disk,
 * msb_upper and msb_channel_fd (an inherited descriptor instead of /dev/hvc0) let another
 * launcher, such as the tests' PID namespace on a loop device, start the very same init. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "agent.h"

static int step(int ok, const char *what) {
    if (!ok) dprintf(2, "msb-agent: cannot %s: %s\n", what, strerror(errno));
    return ok ? 0 : -1;
}

static int wait_for(const char *path) {
    for (int i = 0; i < 5000 && access(path, F_OK); i++) usleep(1000);
    return access(path, F_OK) == 0;
}

static const char *setting(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return value && *value ? value : fallback;
}

static int mount_root(void) {
    const char *disk = setting("msb_disk", "/dev/vda"), *upper = setting("msb_upper", "/dev/vdb");
    mkdir("/lower", 0755);
    mkdir("/upper", 0755);
    mkdir("/newroot", 0755);
    if (step(wait_for(disk), "find the image disk") ||
        step(mount(disk, "/lower", "erofs", MS_RDONLY, NULL) == 0, "mount the image root (EROFS)"))
        return -1;
    if (access(upper, F_OK) == 0) {
        if (step(mount(upper, "/upper", "ext4", 0, NULL) == 0, "mount the writable upper (ext4)")) return -1;
    } else if (step(mount("msb-upper", "/upper", "tmpfs", 0, "mode=0755") == 0, "mount a tmpfs upper")) {
        return -1;
    }
    mkdir("/upper/data", 0755);
    mkdir("/upper/work", 0755);
    return step(mount("overlay", "/newroot", "overlay", 0,
                      "lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work") == 0, "mount the overlay root");
}

static int move_into_root(void) {
    static const char *kept[] = {"/dev", "/proc", "/sys"};
    char target[64];
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
        snprintf(target, sizeof target, "/newroot%s", kept[i]);
        mkdir(target, 0755);
        if (step(mount(kept[i], target, NULL, MS_MOVE, NULL) == 0, "move a mount into the root")) return -1;
    }
    if (step(chdir("/newroot") == 0 && mount(".", "/", NULL, MS_MOVE, NULL) == 0 && chroot(".") == 0 &&
             chdir("/") == 0, "switch to the image root"))
        return -1;
    mkdir("/tmp", 01777);
    mkdir("/dev/pts", 0755);
    mkdir("/dev/shm", 01777);
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
    mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=1777");
    return 0;
}

int vm_init(void) {
    mkdir("/dev", 0755);
    mkdir("/proc", 0555);
    mkdir("/sys", 0555);
    if (step(mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") == 0, "mount /dev") ||
        step(mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0, "mount /proc") ||
        step(mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0, "mount /sys") ||
        mount_root())
        return -1;
    dprintf(2, "msb-agent: root mounted\n");
    if (move_into_root()) return -1;
    const char *name = getenv("msb_hostname"); /* from the kernel command line */
    if (name) sethostname(name, strlen(name));
    const char *inherited = getenv("msb_channel_fd");
    int fd = inherited ? atoi(inherited) : open("/dev/hvc0", O_RDWR | O_NOCTTY | O_CLOEXEC);
    struct termios raw;
    if (step(fd >= 0, "open the agent channel /dev/hvc0")) return -1;
    if (isatty(fd)) { /* the console port is a tty: no echo, no line editing, no CR/LF rewriting */
        if (step(tcgetattr(fd, &raw) == 0, "read the agent channel's tty settings")) return -1;
        cfmakeraw(&raw);
        if (step(tcsetattr(fd, TCSANOW, &raw) == 0, "make the agent channel raw")) return -1;
    }
    dprintf(2, "msb-agent: ready\n");
    return fd;
}
