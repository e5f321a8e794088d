/*
 * kv_file: see kv_file.h.
 */
#include "kv_file.h"

#include "kv_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int kv_file_replace(const char *path, const void *data, size_t n)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid()) >= (int)sizeof tmp ||
        snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) {
        return ENAMETOOLONG;
    }
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else {
        slash[slash == dir ? 1 : 0] = '\0'; /* "/x" -> "/", "a/x" -> "a" */
    }
    struct stat st;
    mode_t mode = stat(path, &st) == 0 ? (st.st_mode & 07777) : 0644;
    /* A leftover of a crashed process with our pid goes; O_EXCL (which also refuses a
     * symlink planted under the name) makes sure the file written is a new one. */
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        return errno;
    }
    int e = fchmod(fd, mode) == 0 ? 0 : errno; /* the umask does not narrow the old mode */
    const char *p = data;
    for (size_t off = 0; e == 0 && off < n;) {
        ssize_t w = write(fd, p + off, n - off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            e = w < 0 ? errno : EIO;
        } else {
            off += (size_t)w;
        }
    }
    if (e == 0 && fdatasync(fd) != 0) {
        e = errno;
    }
    if (close(fd) != 0 && e == 0) {
        e = errno;
    }
    if (e == 0 && rename(tmp, path) != 0) {
        e = errno;
    }
    if (e != 0) {
        unlink(tmp);
        return e;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        kv_log_warning("cannot sync directory %s after replacing %s: %s", dir, path,
                       strerror(errno));
    }
    if (dfd >= 0) {
        close(dfd);
    }
    return 0;
}
