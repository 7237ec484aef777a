/*
 * eifbuild-init: PID 1 of a Nitro Enclave built by eifbuild.
 *
 * SPDX-License-Identifier: Apache-2.0
 *
 * Written for eifbuild from the behaviour contract in
 * shared/spec/kernel-and-init.md (sections 6 and 7); it is not derived from
 * AWS's init.c. It runs from the bootstrap ramdisk, with the customer ramdisk
 * (/cmd, /env, /rootfs) unpacked on top of it, and:
 *
 *   1. blocks every signal (PID 1 only reaps, it never handles signals);
 *   2. mounts devtmpfs on /dev and opens /dev/console as stdin/stdout/stderr;
 *   3. loads the modules listed in /modules_load_order, or /nsm.ko if present
 *      (an NSM built-in kernel has neither: nothing to do);
 *   4. sends the heartbeat to the parent (vsock CID 3, port 9000, byte 0xB7,
 *      echo checked); a failure is reported and the boot continues, because
 *      on Nitro the parent kills an enclave that never sends it anyway;
 *   5. reads /env and /cmd (one entry per line), deletes them;
 *   6. switches to /rootfs and sets up /dev, /proc, /run, /tmp, /dev/shm,
 *      /dev/pts, /sys and one cgroup-v1 hierarchy per enabled controller;
 *   7. runs the command in its own session with the /env environment;
 *   8. reaps every child until the command exits, prints its exit status,
 *      and reboots (with reboot=k the enclave VM stops).
 *
 * Fatal problems print one "eifbuild-init: fatal: ..." line and reboot; PID 1
 * never exits (which would panic the kernel).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define TAG "eifbuild-init: "
#define DEFAULT_PATH "/sbin:/usr/sbin:/bin:/usr/bin"
#define PARENT_CID 3
#define HEARTBEAT_PORT 9000
#define HEARTBEAT_BYTE 0xB7
#define HEARTBEAT_TIMEOUT_S 10
#define MODULE_INIT_COMPRESSED_FILE 4

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

/* <linux/vm_sockets.h>'s address, declared here: musl-gcc has no kernel headers. */
struct vsock_addr {
	sa_family_t svm_family;
	unsigned short svm_reserved1;
	unsigned int svm_port;
	unsigned int svm_cid;
	unsigned char svm_flags;
	unsigned char svm_zero[3];
};

/* ------------------------------------------------------------------ console */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	memcpy(buf, TAG, sizeof(TAG) - 1);
	va_start(ap, fmt);
	n = vsnprintf(buf + sizeof(TAG) - 1, sizeof(buf) - sizeof(TAG), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n += (int)sizeof(TAG) - 1;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	(void)!write(STDERR_FILENO, buf, (size_t)n);
}

static void __attribute__((noreturn)) stop(void)
{
	sync();
	reboot(RB_AUTOBOOT);
	/* reboot() only returns on failure; never let PID 1 exit. */
	for (;;)
		pause();
}

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	say("fatal: %s", msg);
	stop();
}

static void open_console(void)
{
	int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);

	if (fd < 0)
		return; /* keep whatever the kernel gave us */
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

/* ------------------------------------------------------------------- mounts */

static void mount_or_die(const char *src, const char *dst, const char *type,
			 unsigned long flags, const char *data, int tolerate_busy)
{
	if (mount(src, dst, type, flags, data) == 0)
		return;
	if (tolerate_busy && errno == EBUSY)
		return;
	die("mount %s on %s: %s", type ? type : src, dst, strerror(errno));
}

static void ensure_dir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) != 0 && errno != EEXIST)
		die("mkdir %s: %s", path, strerror(errno));
}

static void ensure_symlink(const char *target, const char *path)
{
	if (symlink(target, path) != 0 && errno != EEXIST)
		die("symlink %s -> %s: %s", path, target, strerror(errno));
}

/* One cgroup-v1 hierarchy per enabled controller listed in /proc/cgroups. */
static void mount_cgroups(void)
{
	FILE *f = fopen("/proc/cgroups", "re");
	char line[256], name[64], path[128];
	unsigned hier, ncg, enabled;

	if (!f)
		return; /* kernel without cgroups */
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == '#')
			continue;
		if (sscanf(line, "%63s %u %u %u", name, &hier, &ncg, &enabled) != 4)
			continue;
		if (!enabled)
			continue;
		snprintf(path, sizeof(path), "/sys/fs/cgroup/%s", name);
		ensure_dir(path, 0555);
		mount_or_die("cgroup", path, "cgroup", MS_NODEV | MS_NOSUID | MS_NOEXEC, name, 0);
	}
	fclose(f);
}

static void setup_new_root(void)
{
	const unsigned long nne = MS_NODEV | MS_NOSUID | MS_NOEXEC;

	ensure_dir("/dev", 0755);
	mount_or_die("dev", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, NULL, 1);
	ensure_dir("/proc", 0555);
	mount_or_die("proc", "/proc", "proc", nne, NULL, 0);
	ensure_symlink("/proc/self/fd", "/dev/fd");
	ensure_symlink("/proc/self/fd/0", "/dev/stdin");
	ensure_symlink("/proc/self/fd/1", "/dev/stdout");
	ensure_symlink("/proc/self/fd/2", "/dev/stderr");
	ensure_dir("/run", 0755);
	mount_or_die("tmpfs", "/run", "tmpfs", nne, "mode=0755", 0);
	ensure_dir("/tmp", 01777);
	mount_or_die("tmpfs", "/tmp", "tmpfs", nne, NULL, 0);
	ensure_dir("/dev/shm", 01777);
	mount_or_die("shm", "/dev/shm", "tmpfs", nne, NULL, 0);
	ensure_dir("/dev/pts", 0755);
	mount_or_die("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, NULL, 0);
	ensure_dir("/sys", 0555);
	mount_or_die("sysfs", "/sys", "sysfs", nne, NULL, 0);
	if (access("/sys/fs/cgroup", F_OK) == 0) {
		mount_or_die("cgroup_root", "/sys/fs/cgroup", "tmpfs", nne, "mode=0755", 0);
		mount_cgroups();
	}
}

static void switch_root(const char *newroot)
{
	struct stat st;

	if (stat(newroot, &st) != 0 || !S_ISDIR(st.st_mode))
		die("%s is missing: the customer ramdisk has no root filesystem", newroot);
	mount_or_die(newroot, newroot, NULL, MS_BIND | MS_REC, NULL, 0);
	if (chdir(newroot) != 0)
		die("chdir %s: %s", newroot, strerror(errno));
	mount_or_die(".", "/", NULL, MS_MOVE, NULL, 0);
	if (chroot(".") != 0)
		die("chroot %s: %s", newroot, strerror(errno));
	if (chdir("/") != 0)
		die("chdir / in %s: %s", newroot, strerror(errno));
}

/* ------------------------------------------------------------------ modules */

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Returns 0 when loaded, -1 when the file does not exist; dies otherwise. */
static int load_module(const char *path)
{
	int flags = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		if (errno == ENOENT)
			return -1;
		die("open module %s: %s", path, strerror(errno));
	}
	if (ends_with(path, ".xz") || ends_with(path, ".zst") || ends_with(path, ".gz"))
		flags = MODULE_INIT_COMPRESSED_FILE;
	if (syscall(SYS_finit_module, fd, "", flags) != 0 && errno != EEXIST)
		die("load module %s: %s", path, strerror(errno));
	close(fd);
	unlink(path);
	say("loaded module %s", path);
	return 0;
}

static void strip_newline(char *line, ssize_t *len)
{
	if (*len > 0 && line[*len - 1] == '\n')
		line[--*len] = '\0';
}

static void load_modules(void)
{
	FILE *f = fopen("/modules_load_order", "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	if (!f) {
		load_module("/nsm.ko"); /* absent with an NSM built-in kernel */
		return;
	}
	while ((len = getline(&line, &cap, f)) >= 0) {
		strip_newline(line, &len);
		if (len == 0 || line[0] == '#')
			continue;
		if (load_module(line) != 0)
			die("module %s listed in /modules_load_order is missing", line);
	}
	free(line);
	fclose(f);
	unlink("/modules_load_order");
}

/* ---------------------------------------------------------------- heartbeat */

static void heartbeat(void)
{
	struct vsock_addr addr;
	struct timeval tv = { .tv_sec = HEARTBEAT_TIMEOUT_S, .tv_usec = 0 };
	unsigned char byte = HEARTBEAT_BYTE;
	const char *step = "socket";
	int fd;

	fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	memset(&addr, 0, sizeof(addr));
	addr.svm_family = AF_VSOCK;
	addr.svm_cid = PARENT_CID;
	addr.svm_port = HEARTBEAT_PORT;
	step = "connect";
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
		goto fail;
	step = "send";
	if (write(fd, &byte, 1) != 1)
		goto fail;
	step = "receive";
	byte = 0;
	if (read(fd, &byte, 1) != 1)
		goto fail;
	close(fd);
	if (byte != HEARTBEAT_BYTE) {
		say("heartbeat: parent echoed 0x%02X instead of 0x%02X; continuing", byte,
		    HEARTBEAT_BYTE);
		return;
	}
	say("heartbeat: parent acknowledged");
	return;
fail:
	say("heartbeat to parent (vsock cid %d port %d) failed at %s: %s; continuing", PARENT_CID,
	    HEARTBEAT_PORT, step, errno ? strerror(errno) : "connection closed");
	if (fd >= 0)
		close(fd);
}

/* ----------------------------------------------------------- /cmd and /env */

struct strv {
	char **v;
	size_t n;
};

static void strv_push(struct strv *s, char *item)
{
	char **v = realloc(s->v, (s->n + 2) * sizeof(char *));

	if (!v)
		die("out of memory");
	s->v = v;
	s->v[s->n++] = item;
	s->v[s->n] = NULL;
}

/* Returns 0 and fills *out, or -1 if the file does not exist. */
static int read_lines(const char *path, struct strv *out)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	out->v = NULL;
	out->n = 0;
	strv_push(out, NULL); /* an empty, NULL-terminated array */
	out->n = 0;
	if (!f) {
		if (errno == ENOENT)
			return -1;
		die("open %s: %s", path, strerror(errno));
	}
	while ((len = getline(&line, &cap, f)) >= 0) {
		strip_newline(line, &len);
		strv_push(out, line);
		line = NULL;
		cap = 0;
	}
	free(line);
	fclose(f);
	unlink(path);
	return 0;
}

/* ------------------------------------------------------------------ launch */

static pid_t launch(struct strv *cmd, struct strv *env)
{
	sigset_t all;
	pid_t pid = fork();

	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid > 0)
		return pid;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	setsid();
	/* Program lookup uses init's PATH, as the stock init does. */
	setenv("PATH", DEFAULT_PATH, 1);
	execvpe(cmd->v[0], cmd->v, env->v);
	say("cannot run %s: %s", cmd->v[0], strerror(errno));
	_exit(errno == ENOENT ? 127 : 126);
}

static void report_status(int status)
{
	if (WIFEXITED(status))
		say("command exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		say("command killed by signal %d", WTERMSIG(status));
	else
		say("command ended with wait status 0x%x", (unsigned)status);
}

int main(void)
{
	static char sh[] = "sh";
	struct strv cmd, env;
	sigset_t all;
	pid_t child, pid;
	int status;

	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);

	mount_or_die("dev", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, NULL, 1);
	open_console();
	say("starting");

	load_modules();
	heartbeat();

	if (read_lines("/env", &env) != 0)
		say("warning: /env is missing; running with an empty environment (PATH=%s)",
		    DEFAULT_PATH);
	if (env.n == 0)
		strv_push(&env, (char *)"PATH=" DEFAULT_PATH);
	if (read_lines("/cmd", &cmd) != 0)
		die("/cmd is missing: the customer ramdisk does not say what to run");
	if (cmd.n == 0)
		strv_push(&cmd, sh);

	switch_root("/rootfs");
	setup_new_root();

	child = launch(&cmd, &env);
	for (;;) {
		pid = wait(&status);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			die("wait: %s", strerror(errno));
		}
		if (pid == child)
			break;
	}
	report_status(status);
	stop();
}
