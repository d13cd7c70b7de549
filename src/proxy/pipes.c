/* pipes.c — borrow, don't hold: per-worker pools of pipes and head buffers,
 * lent to a connection only while bytes move (HAProxy's maxpipes). An idle
 * client connection holds one socket and a small struct.
 *
 * Pipe sizes must fit fs.pipe-user-pages-soft (16384 pages per user): a
 * process without CAP_SYS_RESOURCE gets EPERM from F_SETPIPE_SZ once its
 * user's pipes hold that many pages, and new pipes then start at 2 pages.
 * So only cfg.big_pipes pipes process-wide are grown to cfg.pipe_size; the
 * others keep the default 64 KiB, and both cases are counted
 * (docs/kernel-notes.md). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proxy/worker.h"

/* Free pipes and buffers kept per worker; more are closed / freed. */
#define FREE_PIPES_MAX 64
#define FREE_BUFS_MAX 128

struct em_proxy_pipe *em_proxy_pipe_get(struct em_proxy_worker *w)
{
	struct em_proxy *p = w->proxy;
	struct em_proxy_pipe *pp = w->pools.pipes;
	int ret;

	if (pp) {
		w->pools.pipes = pp->next;
		w->pools.n_pipes--;
		return pp;
	}
	pp = malloc(sizeof(*pp));
	if (!pp)
		return NULL;
	if (pipe2(pp->fd, O_NONBLOCK | O_CLOEXEC) == -1) {
		free(pp);
		return NULL;
	}
	EM_PROXY_COUNT(p, pipes, 1);
	ret = -1;
	if (atomic_fetch_add(&p->big_pipes, 1) < p->cfg.big_pipes) {
		ret = fcntl(pp->fd[1], F_SETPIPE_SZ, p->cfg.pipe_size);
		if (ret == -1) {
			atomic_fetch_sub(&p->big_pipes, 1);
			EM_PROXY_COUNT(p, pipe_size_failures, 1);
		}
	} else {
		atomic_fetch_sub(&p->big_pipes, 1);
		EM_PROXY_COUNT(p, pipes_small, 1);
	}
	if (ret == -1)
		ret = fcntl(pp->fd[1], F_GETPIPE_SZ);
	pp->capacity = ret > 0 ? (size_t)ret : 4096;
	return pp;
}

static void pipe_close(struct em_proxy *p, struct em_proxy_pipe *pp)
{
	if (pp->capacity > 65536)
		atomic_fetch_sub(&p->big_pipes, 1);
	close(pp->fd[0]);
	close(pp->fd[1]);
	free(pp);
}

/* Only empty pipes come back (em_proxy_splice_drop closes a non-empty one). */
void em_proxy_pipe_put(struct em_proxy_worker *w, struct em_proxy_pipe *pp)
{
	if (w->pools.n_pipes >= FREE_PIPES_MAX || w->stopping) {
		pipe_close(w->proxy, pp);
		return;
	}
	pp->next = w->pools.pipes;
	w->pools.pipes = pp;
	w->pools.n_pipes++;
}

static size_t buf_bytes(const struct em_proxy_worker *w)
{
	size_t in = w->proxy->limits.max_head;

	return sizeof(struct em_proxy_buf) + in + in + 512;
}

/* Buffers are mapped, not malloc'ed: a burst of requests beyond the free
 * list gives its pages back to the kernel when it is over, instead of
 * leaving a fragmented heap that idle connections would appear to cost. */
static void buf_free(struct em_proxy_worker *w, struct em_proxy_buf *b)
{
	munmap(b, buf_bytes(w));
}

struct em_proxy_buf *em_proxy_buf_get(struct em_proxy_worker *w)
{
	struct em_proxy_buf *b = w->pools.bufs;
	size_t in = w->proxy->limits.max_head, out = in + 512;

	if (b) {
		w->pools.bufs = b->next;
		w->pools.n_bufs--;
	} else {
		b = mmap(NULL, buf_bytes(w), PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (b == MAP_FAILED)
			return NULL;
		b->in = (char *)(b + 1);
		b->out = b->in + in;
		b->cap_in = in;
		b->cap_out = out;
	}
	b->in_len = b->out_len = b->out_off = 0;
	w->pools.bufs_out++;
	return b;
}

void em_proxy_buf_put(struct em_proxy_worker *w, struct em_proxy_buf *b)
{
	if (!b)
		return;
	w->pools.bufs_out--;
	if (w->pools.n_bufs >= FREE_BUFS_MAX || w->stopping) {
		buf_free(w, b);
		return;
	}
	b->next = w->pools.bufs;
	w->pools.bufs = b;
	w->pools.n_bufs++;
}

void em_proxy_pools_free(struct em_proxy_worker *w)
{
	while (w->pools.pipes) {
		struct em_proxy_pipe *pp = w->pools.pipes;
		w->pools.pipes = pp->next;
		pipe_close(w->proxy, pp);
	}
	while (w->pools.bufs) {
		struct em_proxy_buf *b = w->pools.bufs;
		w->pools.bufs = b->next;
		buf_free(w, b);
	}
	while (w->pools.reqs) {
		struct em_proxy_free_req *r = w->pools.reqs;
		w->pools.reqs = r->next;
		free(r);
	}
	w->pools.n_pipes = w->pools.n_bufs = w->pools.n_reqs = 0;
}

void em_proxy_splice_drop(struct em_proxy_worker *w, struct em_proxy_splice *s)
{
	if (!s->pipe)
		return;
	/* Bytes left in it belong to a connection that is going away. */
	if (s->queued)
		pipe_close(w->proxy, s->pipe);
	else
		em_proxy_pipe_put(w, s->pipe);
	s->pipe = NULL;
	s->queued = 0;
}

void em_proxy_eat_sigpipe(void)
{
	static const struct timespec zero;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigtimedwait(&set, NULL, &zero);
}

/* SPLICE_F_NONBLOCK only makes the pipe side non-blocking; the sockets are
 * O_NONBLOCK themselves. EAGAIN reading means "socket empty or pipe full";
 * both are resolved by the write half or a later edge. */
ssize_t em_proxy_splice_move(struct em_proxy_worker *w, struct em_proxy_splice *s,
			     int from, int to, uint64_t limit, uint64_t *taken, bool *eof)
{
	uint64_t in_left = limit;
	ssize_t out = 0, n;
	/* The source gave less than asked (empty, or the pipe had no free
	 * slot): not again before the destination made room. */
	bool in_short = false;

	for (;;) {
		bool moved = false;

		if (!s->pipe) {
			if (in_left == 0 || *eof)
				break;
			s->pipe = em_proxy_pipe_get(w);
			if (!s->pipe)
				return -ENOMEM;
		}
		if (!*eof && in_left && !in_short && s->queued < s->pipe->capacity &&
		    !(s->out_full && s->queued >= s->pipe->capacity / 2)) {
			size_t want = s->pipe->capacity - s->queued;
			if (want > in_left)
				want = (size_t)in_left;
			n = splice(from, NULL, s->pipe->fd[1], NULL, want,
				   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
			if (n > 0) {
				s->queued += (size_t)n;
				in_left -= (uint64_t)n;
				if (taken)
					*taken += (uint64_t)n;
				moved = true;
				if ((size_t)n < want)
					in_short = true;
			} else if (n == 0) {
				*eof = true;
			} else if (errno == EAGAIN || errno == EINTR) {
				in_short = true;
			} else {
				return -errno;
			}
		}
		if (s->queued && !s->out_full) {
			n = splice(s->pipe->fd[0], NULL, to, NULL, s->queued,
				   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
			if (n > 0) {
				s->queued -= (size_t)n;
				out += n;
				moved = true;
				in_short = false;	/* room in the pipe again */
			} else if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
				s->out_full = errno == EAGAIN;
			} else if (n == -1) {
				if (errno == EPIPE)
					em_proxy_eat_sigpipe();
				return -errno;
			}
		}
		if (!s->queued) {
			em_proxy_pipe_put(w, s->pipe);
			s->pipe = NULL;
		}
		if (!moved)
			break;
	}
	return out;
}
