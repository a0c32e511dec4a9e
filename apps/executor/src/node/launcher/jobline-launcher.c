/*
 * jobline-launcher: starts the executor's attempts from a small long-lived process, so that
 * neither the Node heap is forked per attempt nor a chain of helper programs is executed.
 * It is the executor's child (started by launcher-client.ts) and speaks a tiny protocol on
 * its stdin/stdout. Linux only.
 *
 * Request (stdin): 8 lowercase hex digits giving the body length, then the body: fields each
 * terminated by NUL.
 *   run  <seq> sandbox <uid> <gid> <net:0|1> <mask> <workspace> <cwd> <program>
 *        <nmkdir> <cgroup-dir>... <nwrites> (<file> <value>)... <nprocs> <procs-file>...
 *        <nargs> <arg>... <nenv> <NAME=value>...
 *   run  <seq> plain <cwd> <program> <nargs> <arg>... <nenv> <NAME=value>...
 *   ack  <seq>       the client has opened the attempt's pipes: close our read ends
 *   rmdir <seq> <dir>...  remove an ended attempt's (empty) cgroup directories
 * Events (stdout), one line each:
 *   S <seq> <pid> <stdout-fd> <stderr-fd>   started; the fds are ours, open /proc/<us>/fd/<n>
 *   X <seq> <code> <signal>                  the attempt's main process ended (code -1 if signalled)
 *   E <seq> <message>                        could not start (nothing runs)
 *   D <seq> 0 | D <seq> 1 <message>          the directories are gone (missing ones count as gone), or the first failure
 *
 * Sandbox attempt: the launcher clone()s into new pid, mount, ipc and uts namespaces, and hands
 * the child a spare network namespace (see netns_pool) unless the job may use the host's network.
 * The launcher's loop does nothing else per attempt: the child, the namespace's init, makes the
 * rest in parallel with other starts. It makes its own network namespace when no spare one was
 * left, makes the attempt's cgroup directories and writes its limits (in the order given; a
 * failure of either is sent back on the sync pipe and the launcher answers E: nothing of the job
 * ran), joins the attempt's cgroups (so everything of the job is counted from its first
 * instruction), makes its mounts private, mounts /proc, /tmp and /dev/shm
 * afresh, masks the part of the work root the job must not see (or cannot traverse) with a
 * tmpfs holding only the path to its workspace, brings loopback up, and forks the job: no
 * supplementary groups, the job uid/gid, no capabilities (bounding, ambient, inheritable),
 * no new privileges, the given environment only. The init waits for the job, reaping
 * orphans, and exits with its status (128 + n for signal n); its exit ends the namespace.
 * The directories of an ended attempt are removed by the remover (see removals), a helper
 * process, so that a slow rmdir never holds up a start.
 *
 * Plain attempt: fork, setsid, exec, as the executor's own user.
 *
 * `jobline-launcher --probe <uid> <gid>` (the executor's start-up check): the namespaces,
 * mounts and privilege drop of a sandbox without a cgroup or a job; exit 0, or 125 with the
 * failing step on stderr.
 *
 * Death: the launcher gets SIGTERM when the executor dies (PR_SET_PDEATHSIG) and every
 * sandbox init gets SIGKILL when the launcher dies, so a killed executor takes its jobs
 * with it. The launcher is a child subreaper: a plain job's orphans become its children, and
 * on shutdown (stdin closed, SIGTERM, SIGINT, SIGHUP) it SIGKILLs every child until none is left.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define LAUNCHER_VERSION "2"

struct attempt {
  char seq[32];
  pid_t pid;
  int out_r, err_r; /* held until the client acks, -1 after */
  int exited;
  int plain;
  int sync_r;    /* EOF once the job has exec'd (or died trying), or the init's set-up failure; -1 once announced */
  int announced; /* the S (or E) line is out */
  int failed;    /* the init could not make the cgroup or the network namespace: E said, no X follows */
};

static struct attempt *attempts;
static size_t n_attempts, cap_attempts;
static pid_t expected_parent;
static int alive_r = -1, alive_w = -1;

/*
 * Spare network namespaces, each with only loopback (up), made while the launcher has nothing
 * else to do and each given to exactly one attempt (then closed): creating a network namespace
 * is the dearest step of a sandbox start (the kernel's per-namespace set-up and the rtnl lock),
 * so it is kept off the attempt's way. Never shared, never reused.
 */
#define NETNS_POOL 8
static int netns_pool[NETNS_POOL];
static int netns_n;
static int netns_broken; /* the host refused once: attempts make their own (and report the error) */
static int own_netns = -1;
static int sandboxes_seen; /* a launcher that only runs plain attempts makes none */

/* ---- small helpers ---- */

static void say(const char *fmt, ...) {
  char line[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  for (int off = 0; off < n;) {
    ssize_t w = write(STDOUT_FILENO, line + off, n - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      _exit(3); /* the client is gone */
    }
    off += w;
  }
}

/* A message on the job's stderr from inside the sandbox set-up, then exit 125 (as `env` does for its own failures). */
static void die_in_child(int err_fd, const char *step, const char *what) {
  dprintf(err_fd, "jobline sandbox: %s %s: %s\n", step, what ? what : "", strerror(errno));
  _exit(125);
}

static int write_all(int fd, const char *s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    s += w;
    n -= w;
  }
  return 0;
}

static void close_from(int lowfd) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0) == 0) return;
#endif
  DIR *d = opendir("/proc/self/fd");
  if (!d) {
    for (int fd = lowfd; fd < 65536; fd++) close(fd);
    return;
  }
  int dfd = dirfd(d);
  int fds[1024], n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < 1024) {
    int fd = atoi(e->d_name);
    if (fd >= lowfd && fd != dfd) fds[n++] = fd;
  }
  closedir(d);
  for (int i = 0; i < n; i++) close(fds[i]);
}

static void reset_signals(void) {
  sigset_t all;
  sigemptyset(&all);
  for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
  sigprocmask(SIG_SETMASK, &all, NULL);
}

/* stdin from /dev/null, stdout and stderr to the attempt's pipes. */
static void job_stdio(int out_w, int err_w) {
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0 || dup2(null, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0) _exit(125);
}

static int mkdirs(const char *path, mode_t mode) {
  char buf[4096];
  size_t len = strlen(path);
  if (len == 0 || len >= sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(buf, path, len + 1);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(buf, mode) < 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(buf, mode) < 0 && errno != EEXIST) return -1;
  return 0;
}

/* ---- the sandbox ---- */

struct run_req {
  const char *seq;
  int plain;
  uid_t uid;
  gid_t gid;
  int net;
  const char *mask;
  const char *workspace;
  const char *cwd;
  const char *program;
  int nprocs;
  char **procs;
  int nmkdirs;
  char **mkdirs;
  int nwrites; /* pairs: file, value */
  char **writes;
  char **argv;
  char **envp;
  int probe;
  int own_net; /* no spare network namespace was left: the init makes its own */
};

static void drop_privileges(const struct run_req *r, int err_w) {
  /* The bounding set first: dropping needs CAP_SETPCAP, which setresuid takes away. */
  for (int c = 0; c <= 63; c++) {
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL) die_in_child(err_w, "drop capability", NULL);
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) die_in_child(err_w, "clear ambient capabilities", NULL);
  if (setgroups(0, NULL) < 0) die_in_child(err_w, "setgroups", NULL);
  if (setresgid(r->gid, r->gid, r->gid) < 0) die_in_child(err_w, "setresgid", NULL);
  if (setresuid(r->uid, r->uid, r->uid) < 0) die_in_child(err_w, "setresuid", NULL);
  /* setresuid to a non-zero uid cleared the permitted and effective sets; clear the inheritable one. */
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capset, &hdr, data) < 0) die_in_child(err_w, "capset", NULL);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die_in_child(err_w, "no_new_privs", NULL);
  /* Never run a job as root: if root could be regained, stop here. */
  if (r->uid != 0 && (setuid(0) == 0 || geteuid() == 0 || getuid() == 0)) {
    errno = EPERM;
    die_in_child(err_w, "privileges", "could be regained");
  }
}

static void loopback_up(int err_w) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) die_in_child(err_w, "socket", "for loopback");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) die_in_child(err_w, "loopback", "flags");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) die_in_child(err_w, "loopback", "up");
  close(s);
}

/* One spare network namespace into the pool: made by the launcher itself, which goes back to its own after. */
static void netns_refill_one(void) {
  if (own_netns < 0) {
    own_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (own_netns < 0) {
      netns_broken = 1;
      return;
    }
  }
  if (unshare(CLONE_NEWNET) < 0) {
    netns_broken = 1;
    return;
  }
  int ok = 0, fd = -1;
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s >= 0) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
      ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
      ok = ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
    }
    close(s);
  }
  if (ok) fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  /* Back to the launcher's own namespace, or nothing more is safe to do: exit (the executor restarts us). */
  if (setns(own_netns, CLONE_NEWNET) < 0) _exit(9);
  if (fd < 0) {
    netns_broken = 1;
    return;
  }
  netns_pool[netns_n++] = fd;
}

static void sandbox_mounts(const struct run_req *r, int err_w) {
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die_in_child(err_w, "make mounts private", NULL);
  int ws = -1;
  if (r->workspace[0]) {
    ws = open(r->workspace, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (ws < 0) die_in_child(err_w, "open workspace", r->workspace);
  }
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) die_in_child(err_w, "mount", "/proc");
  if (mount("jobline-tmp", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0) die_in_child(err_w, "mount", "/tmp");
  struct stat st;
  if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode)) {
    if (mount("jobline-shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0) die_in_child(err_w, "mount", "/dev/shm");
  }
  if (r->mask[0]) {
    /* Under the private /tmp the folder is not there any more: made in the fresh tmpfs, then covered all the same. */
    if (mkdirs(r->mask, 0755) < 0) die_in_child(err_w, "mkdir", r->mask);
    if (mount("jobline-mask", r->mask, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0) die_in_child(err_w, "mount", r->mask);
  }
  if (ws >= 0) {
    /* The workspace is where it was unless a mount above hid it: then the path is made again and the workspace bound onto it. */
    struct stat now, orig;
    if (fstat(ws, &orig) < 0) die_in_child(err_w, "stat workspace", r->workspace);
    if (stat(r->workspace, &now) < 0 || now.st_dev != orig.st_dev || now.st_ino != orig.st_ino) {
      char src[64];
      snprintf(src, sizeof src, "/proc/self/fd/%d", ws);
      if (mkdirs(r->workspace, 0755) < 0) die_in_child(err_w, "mkdir", r->workspace);
      if (mount(src, r->workspace, NULL, MS_BIND, NULL) < 0) die_in_child(err_w, "bind workspace", r->workspace);
    }
    close(ws);
  }
}

/*
 * A set-up step of the init failed before anything of the job ran: the reason goes to the
 * launcher on the sync pipe (one write, so one read takes it whole), which says E instead of S.
 */
static void init_refused(int report_fd, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) _exit(125);
  if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
  for (int k = 0; k < n; k++)
    if (msg[k] == '\n') msg[k] = ' ';
  if (write(report_fd, msg, n) < 0) {
    /* Nothing to do: the launcher sees the init die (code 125). */
  }
  _exit(125);
}

/*
 * The attempt's cgroup, made by its init (in parallel with other starts, not in the launcher's
 * loop): each directory, then each limit, in order, before the init joins it.
 */
static void make_cgroup(const struct run_req *r, int report_fd) {
  for (int i = 0; i < r->nmkdirs; i++) {
    if (mkdir(r->mkdirs[i], 0755) < 0) init_refused(report_fd, "cannot create the attempt's cgroup: mkdir %s: %s", r->mkdirs[i], strerror(errno));
  }
  for (int i = 0; i < r->nwrites; i++) {
    const char *file = r->writes[2 * i], *value = r->writes[2 * i + 1];
    int fd = open(file, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, value) < 0) init_refused(report_fd, "cannot create the attempt's cgroup: write %s: %s", file, strerror(errno));
    close(fd);
  }
}

/*
 * The namespace init: never returns. `ready_w` (or -1) is closed once the job has exec'd, so the
 * launcher announces an attempt only when the job is in its cgroup, its namespaces and its session:
 * a stop right after the start reaches it.
 */
static void sandbox_init(const struct run_req *r, int out_w, int err_w, int ready_w, int net_fd) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  close(alive_w);
  /* A spare namespace from the pool, loopback already up: this attempt's alone (the launcher closed its copy). */
  if (net_fd >= 0 && setns(net_fd, CLONE_NEWNET) < 0) die_in_child(err_w, "enter the network namespace", NULL);
  struct pollfd p = {alive_r, POLLIN, 0};
  if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR))) _exit(125); /* the launcher died before we armed the signal */
  /* From here on only the attempt's stdio: nothing of the launcher (its protocol pipes, other attempts' pipes). */
  job_stdio(out_w, err_w);
  if (ready_w >= 0) {
    if (dup2(ready_w, 3) < 0) _exit(125);
    fcntl(3, F_SETFD, FD_CLOEXEC);
    ready_w = 3;
  }
  close_from(ready_w >= 0 ? 4 : 3);
  /* Without a spare network namespace, its own, made here rather than in the launcher's clone (the dearest step, off the launcher's loop). */
  if (r->own_net && unshare(CLONE_NEWNET) < 0) init_refused(ready_w >= 0 ? ready_w : 2, "cannot create the namespaces: %s", strerror(errno));
  make_cgroup(r, ready_w >= 0 ? ready_w : 2);
  /* The job may reopen its output (/dev/stdout, /proc/self/fd/1): the pipes are its own. */
  if (fchown(1, r->uid, r->gid) < 0 || fchown(2, r->uid, r->gid) < 0) die_in_child(2, "chown", "the output pipes");
  setsid();
  for (int i = 0; i < r->nprocs; i++) {
    int fd = open(r->procs[i], O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, "0") < 0) die_in_child(2, "join cgroup", r->procs[i]);
    close(fd);
  }
  sandbox_mounts(r, 2);
  if (r->net && net_fd < 0) loopback_up(2);
  int execp[2];
  if (pipe2(execp, O_CLOEXEC) < 0) die_in_child(2, "pipe", NULL);
  pid_t job = fork();
  if (job < 0) die_in_child(2, "fork", "the job");
  if (job == 0) {
    close(execp[0]);
    reset_signals();
    drop_privileges(r, 2);
    if (r->probe) _exit(0);
    if (chdir(r->cwd) < 0) die_in_child(2, "the job user cannot enter its working directory", r->cwd);
    execve(r->program, r->argv, r->envp);
    int e = errno;
    dprintf(2, "jobline: cannot run %s: %s\n", r->program, strerror(e));
    _exit(e == ENOENT ? 127 : 126);
  }
  /* The job's copy of execp[1] closes at its exec (or its death): then the attempt is announced. */
  close(execp[1]);
  char b;
  while (read(execp[0], &b, 1) < 0 && errno == EINTR) {
  }
  close(execp[0]);
  if (ready_w >= 0) close(ready_w);
  /* Only the job holds the pipes: they end when it and whatever it left are gone. */
  int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  dup2(null, 1);
  dup2(null, 2);
  for (;;) {
    int st;
    pid_t w = waitpid(-1, &st, 0);
    if (w < 0) {
      if (errno == EINTR) continue;
      _exit(125);
    }
    if (w != job) continue; /* an orphan of the job, reaped */
    if (WIFEXITED(st)) _exit(WEXITSTATUS(st));
    _exit(128 + WTERMSIG(st));
  }
}

/* ---- removals ---- */

/*
 * An ended attempt's directories (its cgroups, its workspace when empty) are removed by a small
 * helper process, the remover, forked from the launcher at its start: rmdir waits for the cgroup
 * locks and, on a journalled file system, for the journal (the outbox's fsyncs), and must not hold
 * up the starts in the launcher's loop. The launcher forwards its answers (D lines) and keeps each
 * request until answered: if the remover dies, what it left unanswered is done here, and so is
 * everything after.
 */
struct removal {
  char seq[32];
  char *body; /* the fields: seq, dirs..., each NUL-terminated */
  size_t len;
};

static struct removal *removals;
static size_t n_removals, cap_removals;
static pid_t remover_pid = -1;
static int remover_w = -1, remover_r = -1;
static char remover_buf[8192];
static size_t remover_len;

/* rmdir each; missing ones count as gone. Writes the D line into line. */
static void remove_dirs(const char *seq, char **dirs, int n, char *line, size_t size) {
  const char *failed = NULL;
  int e = 0;
  for (int k = 0; k < n; k++) {
    if (rmdir(dirs[k]) < 0 && errno != ENOENT && !failed) {
      e = errno;
      failed = dirs[k];
    }
  }
  if (failed) snprintf(line, size, "D %s 1 rmdir %s: %s\n", seq, failed, strerror(e));
  else snprintf(line, size, "D %s 0\n", seq);
}

/* The fields of a NUL-separated body, in a new array (NULL-terminated); their count in *nf. */
static char **split_fields(char *body, size_t len, int *nf) {
  int n = 0;
  for (size_t k = 0; k < len; k++)
    if (body[k] == 0) n++;
  char **f = calloc(n + 1, sizeof *f);
  if (!f) _exit(4);
  char *p = body;
  for (int k = 0; k < n; k++) {
    f[k] = p;
    p += strlen(p) + 1;
  }
  *nf = n;
  return f;
}

static int read_full(int fd, char *buf, size_t n) {
  while (n > 0) {
    ssize_t r = read(fd, buf, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    buf += r;
    n -= r;
  }
  return 0;
}

/* The remover's life: a request (8 hex digits of length, the body), the removals, one answer line; until EOF. */
static void remover_main(int req_r, int ans_w) {
  char hex[9], line[4200];
  for (;;) {
    if (read_full(req_r, hex, 8) < 0) _exit(0);
    hex[8] = 0;
    unsigned long len = strtoul(hex, NULL, 16);
    if (len == 0 || len > (1UL << 20)) _exit(5);
    char *body = malloc(len);
    if (!body || read_full(req_r, body, len) < 0) _exit(5);
    int nf;
    char **f = split_fields(body, len, &nf);
    if (nf >= 1) {
      remove_dirs(f[0], f + 1, nf - 1, line, sizeof line);
      if (write_all(ans_w, line) < 0) _exit(0);
    }
    free(f);
    free(body);
  }
}

/* Forks the remover (before the launcher has anything else open: it holds only its two pipes and stderr). */
static void start_remover(void) {
  int req[2], ans[2];
  if (pipe2(req, O_CLOEXEC) < 0) return;
  if (pipe2(ans, O_CLOEXEC) < 0) {
    close(req[0]);
    close(req[1]);
    return;
  }
  pid_t launcher = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(req[0]);
    close(req[1]);
    close(ans[0]);
    close(ans[1]);
    return;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != launcher) _exit(0);
    close(req[1]);
    close(ans[0]);
    /* Not the launcher's protocol pipes: the client sees them end when the launcher ends. */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0) _exit(125);
    remover_main(req[0], ans[1]);
  }
  close(req[0]);
  close(ans[1]);
  remover_pid = pid;
  remover_w = req[1];
  remover_r = ans[0];
  fcntl(remover_r, F_SETFL, O_NONBLOCK);
}

static void forget_removal(const char *seq) {
  for (size_t i = 0; i < n_removals; i++) {
    if (strcmp(removals[i].seq, seq) != 0) continue;
    free(removals[i].body);
    removals[i] = removals[--n_removals];
    return;
  }
}

/* Forwards the remover's complete answer lines; returns -1 at EOF (the remover is gone). */
static int remover_answers(void) {
  for (;;) {
    ssize_t n = read(remover_r, remover_buf + remover_len, sizeof remover_buf - remover_len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return 0; /* EAGAIN: all read */
    if (n == 0) return -1;
    remover_len += n;
    size_t off = 0;
    for (char *nl; (nl = memchr(remover_buf + off, '\n', remover_len - off)) != NULL; off = nl - remover_buf + 1) {
      *nl = 0;
      char seq[32];
      if (sscanf(remover_buf + off, "D %31s", seq) == 1) forget_removal(seq);
      say("%s\n", remover_buf + off);
    }
    memmove(remover_buf, remover_buf + off, remover_len - off);
    remover_len -= off;
    if (remover_len == sizeof remover_buf) remover_len = 0; /* no line is that long */
  }
}

/* The remover died (or its pipe broke): its last answers forwarded, what it left unanswered done here. */
static void remover_gone(void) {
  if (remover_r < 0) return;
  while (remover_answers() == 0) {
    /* The remover may still be exiting: its pipe ends at its death. Wait for it. */
    struct pollfd p = {remover_r, POLLIN, 0};
    if (poll(&p, 1, 1000) <= 0) break;
  }
  close(remover_r);
  close(remover_w);
  remover_r = remover_w = -1;
  if (remover_pid > 0) kill(remover_pid, SIGKILL);
  remover_pid = -1;
  while (n_removals > 0) {
    struct removal *rm = &removals[n_removals - 1];
    int nf;
    char **f = split_fields(rm->body, rm->len, &nf);
    char line[4200];
    remove_dirs(f[0], f + 1, nf - 1, line, sizeof line);
    say("%s", line);
    free(f);
    free(rm->body);
    n_removals--;
  }
}

/* A removal request: to the remover while it lives, else here. */
static void request_removal(char **f, int nf) {
  const char *seq = f[1];
  if (remover_w >= 0 && strlen(seq) < sizeof removals[0].seq) {
    size_t len = 0;
    for (int k = 1; k < nf; k++) len += strlen(f[k]) + 1;
    char *frame = malloc(8 + len + 1);
    if (!frame) _exit(4);
    snprintf(frame, 9, "%08zx", len);
    size_t off = 8;
    for (int k = 1; k < nf; k++) {
      size_t l = strlen(f[k]) + 1;
      memcpy(frame + off, f[k], l);
      off += l;
    }
    if (n_removals == cap_removals) {
      cap_removals = cap_removals ? cap_removals * 2 : 64;
      removals = realloc(removals, cap_removals * sizeof *removals);
      if (!removals) _exit(4);
    }
    struct removal *rm = &removals[n_removals++];
    strcpy(rm->seq, seq);
    rm->len = len;
    rm->body = malloc(len);
    if (!rm->body) _exit(4);
    memcpy(rm->body, frame + 8, len);
    frame[off] = 0;
    int ok = 1;
    for (size_t w = 0; w < off;) {
      ssize_t n = write(remover_w, frame + w, off - w);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        ok = 0;
        break;
      }
      w += n;
    }
    free(frame);
    if (!ok) remover_gone(); /* answers this one too */
    return;
  }
  char line[4200];
  remove_dirs(seq, f + 2, nf - 2, line, sizeof line);
  say("%s", line);
}

/* ---- attempts ---- */

static struct attempt *find_attempt(const char *seq) {
  for (size_t i = 0; i < n_attempts; i++)
    if (strcmp(attempts[i].seq, seq) == 0) return &attempts[i];
  return NULL;
}

static void forget(struct attempt *a) {
  if (a->sync_r >= 0) close(a->sync_r);
  if (a->out_r >= 0) close(a->out_r);
  if (a->err_r >= 0) close(a->err_r);
  *a = attempts[--n_attempts];
}

static void start(struct run_req *r) {
  if (strlen(r->seq) >= sizeof attempts[0].seq || find_attempt(r->seq)) {
    say("E %s duplicate or invalid sequence number\n", r->seq);
    return;
  }
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) < 0) {
    say("E %s pipe: %s\n", r->seq, strerror(errno));
    return;
  }
  if (pipe2(err, O_CLOEXEC) < 0) {
    say("E %s pipe: %s\n", r->seq, strerror(errno));
    close(out[0]);
    close(out[1]);
    return;
  }
  int sync[2];
  if (pipe2(sync, O_CLOEXEC) < 0) {
    say("E %s pipe: %s\n", r->seq, strerror(errno));
    close(out[0]);
    close(out[1]);
    close(err[0]);
    close(err[1]);
    return;
  }
  pid_t pid;
  if (r->plain) {
    pid = fork();
    if (pid == 0) {
      /* sync[1] (close-on-exec) stays open until the exec: its end tells the launcher the job runs. */
      if (dup2(sync[1], 3) < 0) _exit(125);
      fcntl(3, F_SETFD, FD_CLOEXEC);
      job_stdio(out[1], err[1]);
      close_from(4);
      reset_signals();
      setsid();
      if (chdir(r->cwd) < 0) die_in_child(2, "chdir", r->cwd);
      execve(r->program, r->argv, r->envp);
      int e = errno;
      dprintf(2, "jobline: cannot run %s: %s\n", r->program, strerror(e));
      _exit(e == ENOENT ? 127 : 126);
    }
  } else {
    int net_fd = r->net && netns_n > 0 ? netns_pool[--netns_n] : -1;
    r->own_net = r->net && net_fd < 0;
    int flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
    /* clone without a new stack behaves as fork, with the namespaces. */
    pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0) sandbox_init(r, out[1], err[1], sync[1], net_fd);
    if (net_fd >= 0) close(net_fd);
  }
  int e = errno;
  close(out[1]);
  close(err[1]);
  close(sync[1]);
  if (pid < 0) {
    close(out[0]);
    close(err[0]);
    close(sync[0]);
    say("E %s %s: %s\n", r->seq, r->plain ? "fork" : "cannot create the namespaces", strerror(e));
    return;
  }
  if (n_attempts == cap_attempts) {
    cap_attempts = cap_attempts ? cap_attempts * 2 : 64;
    attempts = realloc(attempts, cap_attempts * sizeof *attempts);
    if (!attempts) _exit(4);
  }
  struct attempt *a = &attempts[n_attempts++];
  memset(a, 0, sizeof *a);
  strcpy(a->seq, r->seq);
  a->pid = pid;
  a->out_r = out[0];
  a->err_r = err[0];
  a->plain = r->plain;
  a->sync_r = sync[0];
  /* Read when it polls readable: an init's failure message, or EOF; never blocks the loop. */
  fcntl(a->sync_r, F_SETFL, O_NONBLOCK);
}

/*
 * The job runs (or already died): tell the client, once. Or the init could not make the
 * attempt's cgroup or network namespace and said why on the sync pipe: E, nothing of the job
 * ran, and no X follows.
 */
static void announce(struct attempt *a) {
  if (a->announced) return;
  a->announced = 1;
  char msg[1024];
  ssize_t n = -1;
  if (a->sync_r >= 0) {
    do n = read(a->sync_r, msg, sizeof msg - 1);
    while (n < 0 && errno == EINTR);
    close(a->sync_r);
  }
  a->sync_r = -1;
  if (n > 0) {
    msg[n] = 0;
    a->failed = 1;
    if (a->out_r >= 0) close(a->out_r);
    if (a->err_r >= 0) close(a->err_r);
    a->out_r = a->err_r = -1;
    say("E %s %s\n", a->seq, msg);
    return;
  }
  say("S %s %d %d %d\n", a->seq, (int)a->pid, a->out_r, a->err_r);
}

static void reap(void) {
  for (;;) {
    int st;
    pid_t pid = waitpid(-1, &st, WNOHANG);
    if (pid <= 0) return;
    if (pid == remover_pid) {
      remover_pid = -1;
      remover_gone();
      continue;
    }
    for (size_t i = 0; i < n_attempts; i++) {
      struct attempt *a = &attempts[i];
      if (a->pid != pid || a->exited) continue;
      announce(a); /* S before X, always */
      a->exited = 1;
      if (a->failed) {
        forget(a);
        break;
      }
      if (WIFEXITED(st)) say("X %s %d 0\n", a->seq, WEXITSTATUS(st));
      else say("X %s -1 %d\n", a->seq, WTERMSIG(st));
      if (a->out_r < 0) forget(a);
      break;
    }
    /* Anything else was an orphan of a plain job (we are its subreaper): reaped, nothing to say. */
  }
}

/* Our children now, from /proc (CONFIG_PROC_CHILDREN is not everywhere). */
static int kill_children(void) {
  DIR *d = opendir("/proc");
  if (!d) return 0;
  pid_t self = getpid();
  int found = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char path[300], buf[512];
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) continue;
    buf[n] = 0;
    char *rp = strrchr(buf, ')');
    char state;
    int ppid;
    if (!rp || sscanf(rp + 2, "%c %d", &state, &ppid) != 2) continue;
    if (ppid != self) continue;
    found++;
    if (state != 'Z') kill(atoi(e->d_name), SIGKILL);
  }
  closedir(d);
  return found;
}

static void shutdown_all(int code) {
  for (size_t i = 0; i < n_attempts; i++) {
    if (attempts[i].exited) continue;
    if (attempts[i].plain) kill(-attempts[i].pid, SIGKILL);
    kill(attempts[i].pid, SIGKILL);
  }
  for (int round = 0; round < 10000; round++) {
    int st;
    while (waitpid(-1, &st, WNOHANG) > 0) {
    }
    if (kill_children() == 0) break;
    usleep(1000);
  }
  _exit(code);
}

/* ---- requests ---- */

static char **take_list(char **f, int nf, int *i, int *count) {
  if (*i >= nf) return NULL;
  long n = strtol(f[(*i)++], NULL, 10);
  if (n < 0 || *i + n > nf) return NULL;
  char **list = calloc(n + 1, sizeof *list);
  if (!list) _exit(4);
  for (long k = 0; k < n; k++) list[k] = f[(*i)++];
  if (count) *count = (int)n;
  return list;
}

static int parse_id(const char *s, unsigned *out) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || *end || end == s || v > 0xfffffffeUL) return -1;
  *out = (unsigned)v;
  return 0;
}

static void handle(char **f, int nf) {
  if (nf < 2) return;
  const char *seq = f[1];
  if (strcmp(f[0], "rmdir") == 0) {
    request_removal(f, nf);
    return;
  }
  if (strcmp(f[0], "ack") == 0) {
    struct attempt *a = find_attempt(seq);
    if (!a) return;
    if (a->out_r >= 0) close(a->out_r);
    if (a->err_r >= 0) close(a->err_r);
    a->out_r = a->err_r = -1;
    if (a->exited) forget(a);
    return;
  }
  struct run_req r;
  memset(&r, 0, sizeof r);
  r.seq = seq;
  unsigned uid = 0, gid = 0;
  int i;
  if (strcmp(f[0], "run") != 0 || nf < 3) goto bad;
  if (strcmp(f[2], "plain") == 0) {
    if (nf < 5) goto bad;
    r.plain = 1;
    r.cwd = f[3];
    r.program = f[4];
    i = 5;
  } else if (strcmp(f[2], "sandbox") == 0) {
    sandboxes_seen = 1;
    if (nf < 11 || parse_id(f[3], &uid) || parse_id(f[4], &gid) || uid == 0 || gid == 0) goto bad;
    r.uid = uid;
    r.gid = gid;
    r.net = strcmp(f[5], "1") == 0;
    r.mask = f[6];
    r.workspace = f[7];
    r.cwd = f[8];
    r.program = f[9];
    i = 10;
    r.mkdirs = take_list(f, nf, &i, &r.nmkdirs);
    if (!r.mkdirs) goto bad;
    /* The writes come as a count of pairs. */
    if (i >= nf) goto bad_lists;
    long nw = strtol(f[i], NULL, 10);
    if (nw < 0 || nw > (nf - i - 1) / 2) goto bad_lists;
    char twice[24];
    snprintf(twice, sizeof twice, "%ld", nw * 2);
    f[i] = twice;
    r.writes = take_list(f, nf, &i, NULL);
    r.nwrites = (int)nw;
    if (!r.writes) goto bad_lists;
    r.procs = take_list(f, nf, &i, &r.nprocs);
    if (!r.procs) goto bad_lists;
  } else {
    goto bad;
  }
  r.argv = take_list(f, nf, &i, NULL);
  r.envp = r.argv ? take_list(f, nf, &i, NULL) : NULL;
  if (!r.argv || !r.envp || i != nf || r.program[0] != '/' || !r.argv[0]) goto bad_lists;
  start(&r);
  free(r.mkdirs);
  free(r.writes);
  free(r.procs);
  free(r.argv);
  free(r.envp);
  return;
bad_lists:
  free(r.mkdirs);
  free(r.writes);
  free(r.procs);
  free(r.argv);
  free(r.envp);
bad:
  say("E %s malformed request\n", seq);
}

static int probe(const char *uid_s, const char *gid_s) {
  unsigned uid, gid;
  if (parse_id(uid_s, &uid) || parse_id(gid_s, &gid) || uid == 0 || gid == 0) {
    fprintf(stderr, "jobline-launcher: --probe needs a non-zero uid and gid\n");
    return 2;
  }
  static char *none[] = {NULL};
  struct run_req r;
  memset(&r, 0, sizeof r);
  r.seq = "probe";
  r.uid = uid;
  r.gid = gid;
  r.net = 1;
  r.probe = 1;
  r.mask = r.workspace = "";
  r.cwd = "/";
  r.program = "";
  r.argv = r.envp = none;
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return 125;
  pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | SIGCHLD, NULL, NULL, NULL, NULL);
  if (pid < 0) {
    fprintf(stderr, "jobline sandbox: cannot create the namespaces: %s\n", strerror(errno));
    return 125;
  }
  if (pid == 0) sandbox_init(&r, p[1], p[1], -1, -1);
  close(p[1]);
  char buf[1024];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) {
    if (write(2, buf, n) < 0) break;
  }
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  fprintf(stderr, "jobline sandbox: the probe was killed by signal %d\n", WTERMSIG(st));
  return 125;
}

static char *inbuf;
static size_t inlen, incap;

/* Handles every complete frame in the input buffer. */
static void frames(void) {
  size_t off = 0;
  while (inlen - off >= 8) {
    char hex[9];
    memcpy(hex, inbuf + off, 8);
    hex[8] = 0;
    char *end;
    unsigned long len = strtoul(hex, &end, 16);
    if (*end || len > (64UL << 20)) {
      fprintf(stderr, "jobline-launcher: bad frame header\n");
      shutdown_all(5);
    }
    if (inlen - off - 8 < len) break;
    char *body = inbuf + off + 8;
    if (len == 0 || body[len - 1] != 0) {
      fprintf(stderr, "jobline-launcher: frame not NUL-terminated\n");
      shutdown_all(5);
    }
    int nf;
    char **f = split_fields(body, len, &nf);
    handle(f, nf);
    free(f);
    off += 8 + len;
  }
  memmove(inbuf, inbuf + off, inlen - off);
  inlen -= off;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--version") == 0) {
    puts("jobline-launcher " LAUNCHER_VERSION);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "--probe") == 0) return probe(argv[2], argv[3]);
  if (argc != 2) {
    fprintf(stderr, "usage: jobline-launcher <parent pid> (started by the Jobline executor)\n");
    return 2;
  }
  expected_parent = (pid_t)atoi(argv[1]);
  /* Dies with the executor: SIGTERM (handled: we kill our jobs first) when the parent goes. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != expected_parent) return 6;
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  signal(SIGPIPE, SIG_IGN);
  start_remover();
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  int alive[2];
  if (sfd < 0 || pipe2(alive, O_CLOEXEC) < 0) return 7;
  alive_r = alive[0];
  alive_w = alive[1];
  fcntl(STDIN_FILENO, F_SETFD, FD_CLOEXEC);
  fcntl(STDOUT_FILENO, F_SETFD, FD_CLOEXEC);
  say("R %d " LAUNCHER_VERSION "\n", (int)getpid());
  struct pollfd *p = NULL;
  size_t cap_p = 0;
  for (;;) {
    if (cap_p < n_attempts + 3) {
      cap_p = (n_attempts + 3) * 2;
      p = realloc(p, cap_p * sizeof *p);
      if (!p) _exit(4);
    }
    p[0] = (struct pollfd){STDIN_FILENO, POLLIN, 0};
    p[1] = (struct pollfd){sfd, POLLIN, 0};
    p[2] = (struct pollfd){remover_r, POLLIN, 0}; /* ignored by poll while -1 */
    nfds_t np = 3;
    for (size_t i = 0; i < n_attempts; i++)
      if (attempts[i].sync_r >= 0) p[np++] = (struct pollfd){attempts[i].sync_r, POLLIN, 0};
    /* Idle time tops up the spare network namespaces: nothing waiting, one more, then look again. */
    int spare = sandboxes_seen && !netns_broken && netns_n < NETNS_POOL;
    int ready = poll(p, np, spare ? 0 : -1);
    if (ready == 0 && spare) {
      netns_refill_one();
      continue;
    }
    if (ready < 0) {
      if (errno == EINTR) continue;
      shutdown_all(8);
    }
    if (p[2].fd >= 0 && p[2].revents && remover_answers() < 0) remover_gone();
    for (nfds_t k = 3; k < np; k++) {
      if (!p[k].revents) continue;
      for (size_t i = 0; i < n_attempts; i++) {
        if (attempts[i].sync_r != p[k].fd) continue;
        announce(&attempts[i]);
        if (attempts[i].failed && attempts[i].exited) forget(&attempts[i]);
        break;
      }
    }
    if (p[1].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGCHLD) reap();
        else shutdown_all(0);
      }
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      if (incap - inlen < 65536) {
        incap = incap ? incap * 2 : 131072;
        inbuf = realloc(inbuf, incap);
        if (!inbuf) _exit(4);
      }
      ssize_t n = read(STDIN_FILENO, inbuf + inlen, incap - inlen);
      if (n == 0) shutdown_all(0); /* the executor closed us: nothing of ours may outlive it */
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        shutdown_all(8);
      }
      inlen += n;
      frames();
    }
  }
}
