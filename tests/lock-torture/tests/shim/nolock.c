/* A broken lock implementation for tests: every lock request "succeeds" without locking.
 *
 * Built by the integration tests with `cc -shared -fPIC -o libnolock.so nolock.c -ldl` and
 * loaded with LD_PRELOAD. fcntl is variadic; like glibc's own wrapper, read the optional third
 * argument as a pointer-sized value (on x86_64 both int and pointer arguments arrive in a
 * 64-bit register, and the callee only uses the width its command needs) and pass it on.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/file.h>

typedef int (*fcntl_fn)(int, int, ...);

static int is_lock_set(int cmd)
{
	switch (cmd) {
	case F_SETLK:
	case F_SETLKW:
	case F_OFD_SETLK:
	case F_OFD_SETLKW:
		return 1;
	default:
		return 0;
	}
}

static int forward(const char *name, int fd, int cmd, void *arg)
{
	fcntl_fn real = (fcntl_fn)dlsym(RTLD_NEXT, name);
	if (!real)
		real = (fcntl_fn)dlsym(RTLD_NEXT, "fcntl");
	return real(fd, cmd, arg);
}

int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (is_lock_set(cmd))
		return 0;
	return forward("fcntl", fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (is_lock_set(cmd))
		return 0;
	return forward("fcntl64", fd, cmd, arg);
}

int flock(int fd, int operation)
{
	(void)fd;
	(void)operation;
	return 0;
}
