/* source_file.c — manifests from a file or a directory, watched with inotify. */
#include "sources/source_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "registry/manifest.h"
#include "util/clock.h"
#include "util/log.h"

#define DEBOUNCE_MS 100
#define DEBOUNCE_MAX_MS 1000
#define HOLD_MAX_MS 5000

struct tracked {
	char *name;			/* file name inside dir */
	char *source;			/* "file:<full path>" */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
	bool seen;			/* present in the current scan */
	bool force;			/* an event named it: re-read */
	bool loaded;			/* read at least once */
	bool open_w;			/* IN_MODIFY since the last IN_CLOSE_WRITE */
	bool closed;			/* IN_CLOSE_WRITE/IN_MOVED_TO since the last IN_MODIFY */
	size_t n_objects;		/* objects last handed to the sink */
	int64_t hold_since;		/* ms (monotonic) a hold began; 0: not held */
};

struct em_source_file {
	struct em_source_sink sink;
	char *path;			/* as given */
	char *dir;			/* directory watched */
	char *only;			/* file mode: the one file name; NULL for a dir */
	char *commit_name;		/* "file:<path>" */
	struct tracked *files;
	size_t n_files;
	int ifd, efd;
	pthread_t thread;
	bool thread_started;
};

static bool wanted_name(const char *n)
{
	if (n[0] == '.')
		return false;
	size_t l = strlen(n);
	return (l > 5 && strcmp(n + l - 5, ".json") == 0) ||
	       (l > 5 && strcmp(n + l - 5, ".yaml") == 0) ||
	       (l > 4 && strcmp(n + l - 4, ".yml") == 0);
}

/* The file is read into an anonymous mapping rather than a malloc'd
 * buffer: freeing a multi-megabyte heap chunk makes glibc consolidate every
 * fastbin, which with the thousands of small blocks a JSON tree leaves
 * behind cost a third of the load time. Not mmap of the file itself: a
 * writer truncating it under us would turn into SIGBUS. */
static int read_all(int fd, size_t hint, char **out, size_t *len_out, size_t *cap_out,
		    struct em_manifest_error *err)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t cap = ((hint + 1 + pg - 1) / pg) * pg, len = 0;
	char *buf = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return -ENOMEM;
	for (;;) {
		if (len == cap) {
			if (cap > EM_MANIFEST_MAX_BYTES) {
				munmap(buf, cap);
				snprintf(err->reason, sizeof(err->reason), "file larger than the limit");
				return -EFBIG;
			}
			char *nb = mremap(buf, cap, cap * 2, MREMAP_MAYMOVE);
			if (nb == MAP_FAILED) {
				munmap(buf, cap);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			int e = errno;
			munmap(buf, cap);
			snprintf(err->reason, sizeof(err->reason), "read: %s", strerror(e));
			return -e;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	*out = buf;
	*len_out = len;
	*cap_out = cap;
	return 0;
}

int em_source_file_load(const char *file, json_t **items, struct em_manifest_error *err)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int ret;

	*items = NULL;
	memset(err, 0, sizeof(*err));
	if (fd == -1) {
		ret = -errno;
		snprintf(err->reason, sizeof(err->reason), "cannot open: %s", strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		snprintf(err->reason, sizeof(err->reason), "not a regular file");
		goto out;
	}
	if ((unsigned long long)st.st_size > EM_MANIFEST_MAX_BYTES) {
		ret = -EFBIG;
		snprintf(err->reason, sizeof(err->reason), "file larger than the limit");
		goto out;
	}
	ret = read_all(fd, (size_t)st.st_size, &buf, &len, &cap, err);
	if (ret < 0)
		goto out;
	ret = em_manifest_parse(buf, len, items, err);
	munmap(buf, cap);
out:
	close(fd);
	return ret;
}

static struct tracked *find_tracked(struct em_source_file *sf, const char *name)
{
	for (size_t i = 0; i < sf->n_files; i++)
		if (strcmp(sf->files[i].name, name) == 0)
			return &sf->files[i];
	return NULL;
}

static struct tracked *add_tracked(struct em_source_file *sf, const char *name)
{
	struct tracked *nf = realloc(sf->files, (sf->n_files + 1) * sizeof(*nf));
	if (!nf)
		return NULL;
	sf->files = nf;
	struct tracked *t = &sf->files[sf->n_files];
	memset(t, 0, sizeof(*t));
	t->name = strdup(name);
	if (!t->name || asprintf(&t->source, "file:%s/%s", sf->dir, name) == -1) {
		free(t->name);
		return NULL;
	}
	sf->n_files++;
	return t;
}

static bool same_stat(const struct tracked *t, const struct stat *st)
{
	return t->dev == st->st_dev && t->ino == st->st_ino && t->size == st->st_size &&
	       t->mtime.tv_sec == st->st_mtim.tv_sec && t->mtime.tv_nsec == st->st_mtim.tv_nsec &&
	       t->ctime.tv_sec == st->st_ctim.tv_sec && t->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

/* One file to re-read. Parsing and freeing the JSON tree (the costly
 * parts: jansson/libyaml and glibc free) run on a helper thread per file:
 * file i+1 is parsed while file i is normalised and stored, and the thread
 * that allocated a tree also frees it, after the store is done with it;
 * freeing from another thread would contend on that thread's malloc arena
 * with the next parse. At most three trees are alive at a time. */
struct job {
	size_t idx;			/* into sf->files (pointers move on realloc) */
	struct stat st;
	char full[PATH_MAX];
	json_t *items;
	struct em_manifest_error err;
	int ret;
	pthread_t thread;
	bool threaded;
	sem_t parsed, consumed;
};

static void *parse_job(void *arg)
{
	struct job *j = arg;
	j->ret = em_source_file_load(j->full, &j->items, &j->err);
	if (!j->threaded)
		return NULL;
	sem_post(&j->parsed);
	while (sem_wait(&j->consumed) == -1 && errno == EINTR)
		;
	json_decref(j->items);
	j->items = NULL;
	return NULL;
}

static void job_start(struct job *j)
{
	sem_init(&j->parsed, 0, 0);
	sem_init(&j->consumed, 0, 0);
	j->threaded = true;
	if (pthread_create(&j->thread, NULL, parse_job, j) != 0) {
		j->threaded = false;
		parse_job(j);
	}
}

/* Lets the job's thread free its tree and finish. */
static void job_release(struct job *j)
{
	if (j->threaded) {
		sem_post(&j->consumed);
	} else {
		json_decref(j->items);
		j->items = NULL;
	}
}

static void job_join(struct job *j)
{
	if (j->threaded)
		pthread_join(j->thread, NULL);
	sem_destroy(&j->parsed);
	sem_destroy(&j->consumed);
}

/* Hands one parsed file to the sink; true if the sink changed. */
static bool job_apply(struct em_source_file *sf, struct job *j)
{
	struct tracked *t = &sf->files[j->idx];

	if (j->threaded)
		while (sem_wait(&j->parsed) == -1 && errno == EINTR)
			;
	t->dev = j->st.st_dev;
	t->ino = j->st.st_ino;
	t->size = j->st.st_size;
	t->mtime = j->st.st_mtim;
	t->ctime = j->st.st_ctim;
	t->force = false;
	t->loaded = true;
	if (j->ret < 0) {
		if (j->err.line)
			em_err("%s:%d:%d: %s; keeping the objects last read from it",
			       j->full, j->err.line, j->err.column, j->err.reason);
		else
			em_err("%s: %s; keeping the objects last read from it", j->full,
			       j->err.reason[0] ? j->err.reason : strerror(-j->ret));
		job_release(j);
		return false;
	}
	int r = sf->sink.replace(sf->sink.ctx, t->source, NULL, j->items);
	if (r < 0)
		em_err("%s: objects not stored: %s", j->full, strerror(-r));
	else
		t->n_objects = json_array_size(j->items);
	em_debug("%s: %zu objects", j->full, json_array_size(j->items));
	job_release(j);
	return true;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the candidate names (sorted, for a deterministic first order). */
static int list_names(struct em_source_file *sf, char ***out, size_t *n_out)
{
	char **names = NULL;
	size_t n = 0;
	*out = NULL;
	*n_out = 0;
	if (sf->only) {
		names = malloc(sizeof(*names));
		if (!names || !(names[0] = strdup(sf->only))) {
			free(names);
			return -ENOMEM;
		}
		*out = names;
		*n_out = 1;
		return 0;
	}
	DIR *d = opendir(sf->dir);
	if (!d)
		return -errno;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!wanted_name(de->d_name))
			continue;
		char **nn = realloc(names, (n + 1) * sizeof(*nn));
		if (!nn || !(nn[n] = strdup(de->d_name))) {
			free(nn ? nn : names);
			closedir(d);
			return -ENOMEM;
		}
		names = nn;
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);
	*out = names;
	*n_out = n;
	return 0;
}

/* Whether a changed file must wait for its writer (see source_file.h): one
 * that had IN_MODIFY without IN_CLOSE_WRITE after it (`slow-cmd > f` between
 * the O_TRUNC and the close), or one found empty that had objects with no
 * close seen (the truncation of a writer whose events we did not get).
 * Bounded: after HOLD_MAX_MS it is read as it is. */
static bool held(struct em_source_file *sf, struct tracked *t, const struct stat *st,
		 int64_t now)
{
	bool writing = t->open_w || (st->st_size == 0 && t->n_objects > 0 && !t->closed);
	if (!writing) {
		t->hold_since = 0;
		return false;
	}
	if (!t->hold_since)
		t->hold_since = now;
	if (now - t->hold_since < HOLD_MAX_MS) {
		em_debug("%s/%s: still open for writing, not read yet", sf->dir, t->name);
		return true;
	}
	em_warn("%s/%s: %s for %d ms without being closed; reading it as it is",
		sf->dir, t->name, t->open_w ? "written" : "empty", HOLD_MAX_MS);
	t->open_w = false;
	t->hold_since = 0;
	/* An empty file read now stays read: n_objects becomes 0. */
	return false;
}

/* Milliseconds until the first hold ends (0: now), -1 if none. */
static int next_hold_ms(const struct em_source_file *sf)
{
	int64_t first = -1;
	for (size_t i = 0; i < sf->n_files; i++) {
		int64_t h = sf->files[i].hold_since;
		if (h && (first == -1 || h < first))
			first = h;
	}
	if (first == -1)
		return -1;
	int64_t left = first + HOLD_MAX_MS - (int64_t)em_clock_ms();
	return left < 0 ? 0 : (int)left;
}

/* The files of names that must be read now (new, changed, forced, and not
 * held for their writer), marking every tracked file found as seen. */
static size_t plan_jobs(struct em_source_file *sf, char **names, size_t n, struct job *jobs)
{
	size_t n_jobs = 0;
	int64_t now = (int64_t)em_clock_ms();

	for (size_t i = 0; i < sf->n_files; i++)
		sf->files[i].seen = false;
	for (size_t i = 0; i < n; i++) {
		struct job *j = &jobs[n_jobs];
		snprintf(j->full, sizeof(j->full), "%s/%s", sf->dir, names[i]);
		if (stat(j->full, &j->st) == -1 || !S_ISREG(j->st.st_mode))
			continue;
		struct tracked *t = find_tracked(sf, names[i]);
		if (!t) {
			t = add_tracked(sf, names[i]);
			if (!t)
				continue;
			t->force = true;
		}
		t->seen = true;
		if ((t->force || !same_stat(t, &j->st)) && !held(sf, t, &j->st, now)) {
			j->idx = (size_t)(t - sf->files);
			n_jobs++;
		}
	}
	return n_jobs;
}

/* Reads the files, the next one parsed while this one is applied; true if
 * the sink got a change. */
static bool run_jobs(struct em_source_file *sf, struct job *jobs, size_t n_jobs)
{
	bool changed = false;

	if (n_jobs)
		job_start(&jobs[0]);
	for (size_t i = 0; i < n_jobs; i++) {
		if (i + 1 < n_jobs)
			job_start(&jobs[i + 1]);
		changed |= job_apply(sf, &jobs[i]);
		if (i > 0)
			job_join(&jobs[i - 1]);
	}
	if (n_jobs)
		job_join(&jobs[n_jobs - 1]);
	return changed;
}

static void untrack(struct em_source_file *sf, size_t i)
{
	free(sf->files[i].name);
	free(sf->files[i].source);
	sf->files[i] = sf->files[--sf->n_files];
}

/* Files that went away take their objects with them; true if any had. */
static bool drop_gone(struct em_source_file *sf)
{
	bool changed = false;

	for (size_t i = 0; i < sf->n_files;) {
		struct tracked *t = &sf->files[i];
		if (t->seen) {
			i++;
			continue;
		}
		if (!t->loaded) {	/* named by an event, gone before being read */
			untrack(sf, i);
			continue;
		}
		json_t *empty = json_array();
		if (empty) {
			sf->sink.replace(sf->sink.ctx, t->source, NULL, empty);
			json_decref(empty);
		}
		em_info("%s/%s: removed, its objects are gone", sf->dir, t->name);
		untrack(sf, i);
		changed = true;
	}
	return changed;
}

/* Brings the sink in line with the directory; commits if anything changed. */
static int rescan(struct em_source_file *sf)
{
	char **names;
	size_t n;
	bool changed = false;
	int r = list_names(sf, &names, &n);
	if (r < 0) {
		em_err("%s: cannot list: %s; keeping the objects last read", sf->path, strerror(-r));
		/* Holds end here: their timers would otherwise wake us to fail again. */
		for (size_t i = 0; i < sf->n_files; i++)
			sf->files[i].hold_since = 0;
		return r;
	}
	struct job *jobs = calloc(n ? n : 1, sizeof(*jobs));
	if (jobs)
		changed = run_jobs(sf, jobs, plan_jobs(sf, names, n, jobs));
	free(jobs);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (!jobs) {
		em_err("%s: out of memory, not re-read", sf->path);
		return -ENOMEM;
	}
	changed |= drop_gone(sf);
	/* A failed commit is logged by the registry, which keeps serving the
	 * previous snapshot. */
	if (changed)
		sf->sink.commit(sf->sink.ctx, sf->commit_name);
	return 0;
}

/* Records one event against the file it names. A file first seen through
 * an event is tracked from that event on, so a new file being written
 * slowly is held like an old one. Events are in order: the last one wins. */
static void note_event(struct em_source_file *sf, const struct inotify_event *ev, int64_t now)
{
	if (ev->mask & IN_Q_OVERFLOW) {	/* events lost: re-check everything */
		for (size_t i = 0; i < sf->n_files; i++)
			sf->files[i].force = true;
		return;
	}
	if (!ev->len || (ev->mask & IN_ISDIR))
		return;
	struct tracked *t = find_tracked(sf, ev->name);
	if (!t) {
		bool ours = sf->only ? strcmp(ev->name, sf->only) == 0 : wanted_name(ev->name);
		if (!ours || (ev->mask & (IN_DELETE | IN_MOVED_FROM)) || !(t = add_tracked(sf, ev->name)))
			return;
	}
	t->force = true;
	if (ev->mask & IN_MODIFY) {
		/* The O_TRUNC of `cmd > f` and every write(2) give IN_MODIFY;
		 * the writer's close gives IN_CLOSE_WRITE. */
		if (!t->open_w && !t->hold_since)
			t->hold_since = now;
		t->open_w = true;
		t->closed = false;
	}
	if (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) {
		/* Written and closed, or a complete file renamed in: read it,
		 * even empty (deliberately emptied). */
		t->open_w = false;
		t->closed = true;
		t->hold_since = 0;
	}
	if (ev->mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM)) {
		/* Another inode (or none) under the name: nothing of the old
		 * one's writer applies. */
		t->open_w = false;
		t->closed = false;
		t->hold_since = 0;
	}
}

/* Reads pending inotify events, marking named files for re-reading. */
static void drain(struct em_source_file *sf)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int64_t now = (int64_t)em_clock_ms();
	for (;;) {
		ssize_t n = read(sf->ifd, buf, sizeof(buf));
		if (n <= 0)
			return;
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			note_event(sf, ev, now);
			p += sizeof(*ev) + ev->len;
		}
	}
}

static void *watch_thread(void *arg)
{
	struct em_source_file *sf = arg;
	struct pollfd pfd[2] = {
		{ .fd = sf->ifd, .events = POLLIN },
		{ .fd = sf->efd, .events = POLLIN },
	};
	for (;;) {
		/* Sleeps until an event or, when a file is held for its
		 * writer, until that hold runs out. */
		int r = poll(pfd, 2, next_hold_ms(sf));
		if (r == -1) {
			if (errno == EINTR)
				continue;
			em_err("%s: poll: %s; no more reloads", sf->path, strerror(errno));
			return NULL;
		}
		if (r > 0 && pfd[1].revents)
			return NULL;
		if (r > 0) {
			drain(sf);
			/* Debounce: wait for DEBOUNCE_MS of quiet (at most
			 * DEBOUNCE_MAX_MS), so a burst of writes gives one reload. */
			for (int waited = 0; waited < DEBOUNCE_MAX_MS; waited += DEBOUNCE_MS) {
				r = poll(pfd, 2, DEBOUNCE_MS);
				if (r > 0 && pfd[1].revents)
					return NULL;
				if (r <= 0)
					break;
				drain(sf);
			}
		}
		rescan(sf);
	}
}

/* The directory to watch and, for a file, its name: 0 or -errno. */
static int set_paths(struct em_source_file *sf, const char *path)
{
	struct stat st;

	if (stat(path, &st) == -1)
		return -errno;
	sf->path = strdup(path);
	if (!sf->path || asprintf(&sf->commit_name, "file:%s", path) == -1) {
		sf->commit_name = NULL;
		return -ENOMEM;
	}
	if (S_ISDIR(st.st_mode)) {
		sf->dir = strdup(path);
	} else if (S_ISREG(st.st_mode)) {
		const char *slash = strrchr(path, '/');
		sf->dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
		sf->only = strdup(slash ? slash + 1 : path);
		if (!sf->only)
			return -ENOMEM;
	} else {
		return -EINVAL;
	}
	return sf->dir ? 0 : -ENOMEM;
}

int em_source_file_start(const char *path, struct em_source_sink sink,
			 struct em_source_file **out)
{
	struct em_source_file *sf = calloc(1, sizeof(*sf));
	int ret;

	*out = NULL;
	if (!sf)
		return -ENOMEM;
	sf->ifd = sf->efd = -1;
	sf->sink = sink;
	ret = set_paths(sf, path);
	if (ret < 0)
		goto fail;
	sf->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	sf->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (sf->ifd == -1 || sf->efd == -1) {
		ret = -errno;
		goto fail;
	}
	/* Watch before the first read so no change between the two is lost. */
	if (inotify_add_watch(sf->ifd, sf->dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM |
			      IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB) == -1) {
		ret = -errno;
		goto fail;
	}
	ret = rescan(sf);
	if (ret < 0)
		goto fail;
	ret = pthread_create(&sf->thread, NULL, watch_thread, sf);
	if (ret) {
		ret = -ret;
		goto fail;
	}
	sf->thread_started = true;
	*out = sf;
	return 0;
fail:
	em_source_file_stop(sf);
	return ret;
}

void em_source_file_stop(struct em_source_file *sf)
{
	if (!sf)
		return;
	if (sf->thread_started) {
		uint64_t one = 1;
		if (write(sf->efd, &one, sizeof(one)) == -1)
			em_warn("%s: cannot wake the watcher: %s", sf->path, strerror(errno));
		pthread_join(sf->thread, NULL);
	}
	if (sf->ifd != -1)
		close(sf->ifd);
	if (sf->efd != -1)
		close(sf->efd);
	for (size_t i = 0; i < sf->n_files; i++) {
		free(sf->files[i].name);
		free(sf->files[i].source);
	}
	free(sf->files);
	free(sf->path);
	free(sf->dir);
	free(sf->only);
	free(sf->commit_name);
	free(sf);
}
