/* fakeip.c — stable, persisted fake IP allocation. */
#include "registry/fakeip.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/stat.h>
#include <time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry/guard.h"
#include "registry/strmap.h"
#include "util/cidr.h"
#include "util/clock.h"
#include "util/defaults.h"
#include "util/log.h"

/* Past this many probes in an IPv6 range (2^64 addresses) we give up: a
 * range that full is a configuration error, not a probing problem. */
#define V6_MAX_PROBES 4096

struct fe {
	bool has4, has6;
	bool live;
	uint32_t off4;			/* offset inside the v4 range */
	uint64_t off6;			/* offset inside the v6 range (host part) */
	uint64_t seen_round;
	uint64_t dead_seq;		/* when it stopped being live: eviction order */
	char key[];
};

struct em_fakeip_pool {
	uint32_t base4;			/* host order */
	uint64_t usable4;		/* addresses 1 .. usable4 */
	bool v6;
	struct in6_addr base6;
	uint64_t usable6;
	unsigned host_bits6;
	char *state_file;
	size_t max_remembered;
	struct em_strmap names;		/* key -> struct fe */
	struct em_strmap owners;	/* "4/<off>" or "6/<off>" -> struct fe */
	uint64_t round, seq;
	size_t live, remembered;
	bool dirty;
	/* After a failed save: no new attempt before next_save_ns; the wait
	 * doubles from 1 s up to SAVE_BACKOFF_MAX_S. */
	uint64_t next_save_ns;
	unsigned backoff_s;
};

#define SAVE_BACKOFF_MAX_S 300

/* ---- address <-> offset ------------------------------------------------ */

static void v4_of(const struct em_fakeip_pool *p, uint32_t off, struct in_addr *a)
{
	a->s_addr = htonl(p->base4 + off);
}

static void v6_of(const struct em_fakeip_pool *p, uint64_t off, struct in6_addr *a)
{
	*a = p->base6;
	for (int i = 0; i < 8; i++)
		a->s6_addr[15 - i] |= (uint8_t)(off >> (8 * i));
}

static bool v4_off(const struct em_fakeip_pool *p, const struct in_addr *a, uint32_t *off)
{
	uint32_t h = ntohl(a->s_addr);
	if (h < p->base4 || h - p->base4 < 1 || h - p->base4 > p->usable4)
		return false;
	*off = h - p->base4;
	return true;
}

static bool v6_off(const struct em_fakeip_pool *p, const struct in6_addr *a, uint64_t *off)
{
	unsigned prefix = 128 - p->host_bits6;
	for (unsigned bit = 0; bit < prefix; bit++) {
		uint8_t m = (uint8_t)(0x80 >> (bit % 8));
		if ((a->s6_addr[bit / 8] & m) != (p->base6.s6_addr[bit / 8] & m))
			return false;
	}
	uint64_t o = 0;
	for (int i = 0; i < 8; i++)
		o = (o << 8) | a->s6_addr[8 + i];
	if (p->host_bits6 < 64)
		o &= (1ULL << p->host_bits6) - 1;
	if (o < 1 || o > p->usable6)
		return false;
	*off = o;
	return true;
}

static void owner_key(char *buf, size_t n, int fam, uint64_t off)
{
	snprintf(buf, n, "%d/%llu", fam == AF_INET ? 4 : 6, (unsigned long long)off);
}

static struct fe *owner_get(struct em_fakeip_pool *p, int fam, uint64_t off)
{
	char k[32];
	owner_key(k, sizeof(k), fam, off);
	struct em_strmap_entry *e = em_strmap_get(&p->owners, k);
	return e ? e->val : NULL;
}

static int owner_set(struct em_fakeip_pool *p, int fam, uint64_t off, struct fe *f)
{
	char k[32];
	owner_key(k, sizeof(k), fam, off);
	if (!f) {
		em_strmap_del(&p->owners, k);
		return 0;
	}
	struct em_strmap_entry *e = em_strmap_put(&p->owners, k);
	if (!e)
		return -ENOMEM;
	e->val = f;
	return 0;
}

/* ---- entries ------------------------------------------------------------ */

static struct fe *fe_get(struct em_fakeip_pool *p, const char *key, bool create)
{
	struct em_strmap_entry *e = em_strmap_get(&p->names, key);
	if (e || !create)
		return e ? e->val : NULL;
	size_t len = strlen(key);
	struct fe *f = calloc(1, sizeof(*f) + len + 1);
	if (!f)
		return NULL;
	memcpy(f->key, key, len + 1);
	e = em_strmap_put(&p->names, key);
	if (!e) {
		free(f);
		return NULL;
	}
	e->val = f;
	p->remembered++;	/* new entries start remembered; acquire makes them live */
	f->dead_seq = ++p->seq;
	return f;
}

/* Forgets a remembered entry entirely, releasing its addresses. */
static void fe_forget(struct em_fakeip_pool *p, struct fe *f)
{
	if (f->has4)
		owner_set(p, AF_INET, f->off4, NULL);
	if (f->has6)
		owner_set(p, AF_INET6, f->off6, NULL);
	em_strmap_del(&p->names, f->key);
	if (!f->live)
		p->remembered--;
	free(f);
	p->dirty = true;
}

static void steal(struct em_fakeip_pool *p, struct fe *victim, int fam)
{
	em_warn("fake IP of remembered service %s reused: range full", victim->key);
	if (fam == AF_INET)
		victim->has4 = false;
	else
		victim->has6 = false;
	if (!victim->has4 && !victim->has6)
		fe_forget(p, victim);
}

static uint64_t key_hash(const char *key, int fam)
{
	/* Different seeds so v4 and v6 collisions are independent. */
	uint64_t h = em_strmap_hash(key, strlen(key)) ^ (fam == AF_INET ? 0 : 0x9e3779b97f4a7c15ULL);
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

/* Free first; then the first remembered owner in probe order. */
static int alloc_off(struct em_fakeip_pool *p, struct fe *f, int fam, uint64_t *out)
{
	uint64_t usable = fam == AF_INET ? p->usable4 : p->usable6;
	uint64_t probes = fam == AF_INET ? usable : (usable < V6_MAX_PROBES ? usable : V6_MAX_PROBES);
	uint64_t h = key_hash(f->key, fam);
	struct fe *victim = NULL;
	uint64_t victim_off = 0;

	for (uint64_t i = 0; i < probes; i++) {
		uint64_t off = 1 + (h + i) % usable;
		struct fe *o = owner_get(p, fam, off);
		if (!o) {
			*out = off;
			return 0;
		}
		if (!o->live && !victim) {
			victim = o;
			victim_off = off;
		}
	}
	if (!victim)
		return -ENOSPC;
	steal(p, victim, fam);
	*out = victim_off;
	return 0;
}

int em_fakeip_acquire(struct em_fakeip_pool *p, const char *key,
		      bool *has4, struct in_addr *v4, bool *has6, struct in6_addr *v6)
{
	struct fe *f = fe_get(p, key, true);
	int ret = 0;
	uint64_t off;

	*has4 = *has6 = false;
	if (!f)
		return -ENOMEM;
	if (!f->live) {
		f->live = true;
		p->live++;
		p->remembered--;
		p->dirty = true;
	}
	f->seen_round = p->round;
	if (!f->has4) {
		if (alloc_off(p, f, AF_INET, &off) == 0 && owner_set(p, AF_INET, off, f) == 0) {
			f->has4 = true;
			f->off4 = (uint32_t)off;
			p->dirty = true;
		} else {
			ret = -ENOSPC;
		}
	}
	if (p->v6 && !f->has6) {
		if (alloc_off(p, f, AF_INET6, &off) == 0 && owner_set(p, AF_INET6, off, f) == 0) {
			f->has6 = true;
			f->off6 = off;
			p->dirty = true;
		} else {
			ret = -ENOSPC;
		}
	}
	if (f->has4) {
		*has4 = true;
		v4_of(p, f->off4, v4);
	}
	if (p->v6 && f->has6) {
		*has6 = true;
		v6_of(p, f->off6, v6);
	}
	return ret;
}

void em_fakeip_begin(struct em_fakeip_pool *p)
{
	p->round++;
}

static int cmp_dead(const void *a, const void *b)
{
	const struct fe *x = *(struct fe *const *)a, *y = *(struct fe *const *)b;
	return x->dead_seq < y->dead_seq ? -1 : x->dead_seq > y->dead_seq;
}

static int save(struct em_fakeip_pool *p);

int em_fakeip_end(struct em_fakeip_pool *p)
{
	struct em_strmap_entry *e;
	size_t b;

	for (e = em_strmap_next(&p->names, NULL, &b); e; e = em_strmap_next(&p->names, e, &b)) {
		struct fe *f = e->val;
		if (f->live && f->seen_round != p->round) {
			f->live = false;
			f->dead_seq = ++p->seq;
			p->live--;
			p->remembered++;
			p->dirty = true;
		}
	}
	if (p->remembered > p->max_remembered) {
		struct fe **dead = malloc(p->remembered * sizeof(*dead));
		size_t n = 0;
		if (dead) {
			for (e = em_strmap_next(&p->names, NULL, &b); e;
			     e = em_strmap_next(&p->names, e, &b))
				if (!((struct fe *)e->val)->live)
					dead[n++] = e->val;
			qsort(dead, n, sizeof(*dead), cmp_dead);
			for (size_t i = 0; i < n && p->remembered > p->max_remembered; i++)
				fe_forget(p, dead[i]);
			free(dead);
		}
	}
	if (!p->dirty)
		return 0;
	uint64_t now = em_clock_ns();
	if (now < p->next_save_ns)
		return 0;	/* backing off; the next round after it retries */
	int ret = save(p);
	if (ret == 0) {
		p->dirty = false;
		p->backoff_s = 0;
		p->next_save_ns = 0;
	} else {
		p->backoff_s = p->backoff_s ? p->backoff_s * 2 : 1;
		if (p->backoff_s > SAVE_BACKOFF_MAX_S)
			p->backoff_s = SAVE_BACKOFF_MAX_S;
		p->next_save_ns = now + (uint64_t)p->backoff_s * 1000000000u;
	}
	return ret;
}

size_t em_fakeip_live_count(const struct em_fakeip_pool *p) { return p->live; }
size_t em_fakeip_remembered_count(const struct em_fakeip_pool *p) { return p->remembered; }

/* ---- persistence --------------------------------------------------------- */

/* write to "<file>.tmp", fsync, rename over the file, fsync the directory:
 * after a crash the file is either the old or the new mapping, never half. */
static int save(struct em_fakeip_pool *p)
{
	if (!p->state_file)
		return 0;
	char *tmp = NULL, *dircopy = NULL;
	int ret = -ENOMEM, fd = -1;
	FILE *fp = NULL;
	if (asprintf(&tmp, "%s.tmp", p->state_file) == -1) {
		tmp = NULL;
		goto out;
	}
	/* A new file of our own, never one somebody placed there (a symlink
	 * to elsewhere, a file another user can read): a stale temp file of a
	 * crashed run is unlinked (unlink never follows a symlink) and the
	 * open retried once. */
	for (int tries = 0; tries < 2; tries++) {
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd != -1 || errno != EEXIST || unlink(tmp) == -1)
			break;
	}
	if (fd == -1) {
		ret = -errno;
		free(tmp);	/* not ours to unlink */
		tmp = NULL;
		goto out;
	}
	fp = fdopen(fd, "w");
	if (!fp) {
		ret = -errno;
		goto out;
	}
	fd = -1;
	struct em_strmap_entry *e;
	size_t b;
	for (e = em_strmap_next(&p->names, NULL, &b); e; e = em_strmap_next(&p->names, e, &b)) {
		struct fe *f = e->val;
		char a4[INET_ADDRSTRLEN] = "-", a6[INET6_ADDRSTRLEN] = "";
		struct in_addr v4;
		struct in6_addr v6;
		if (f->has4) {
			v4_of(p, f->off4, &v4);
			inet_ntop(AF_INET, &v4, a4, sizeof(a4));
		}
		if (p->v6 && f->has6) {
			v6_of(p, f->off6, &v6);
			inet_ntop(AF_INET6, &v6, a6, sizeof(a6));
		}
		fprintf(fp, "%s %s%s%s\n", f->key, a4, a6[0] ? " " : "", a6);
	}
	if (fflush(fp) == EOF || fsync(fileno(fp)) == -1) {
		ret = -errno;
		goto out;
	}
	if (fclose(fp) == EOF) {
		fp = NULL;
		ret = -errno;
		goto out;
	}
	fp = NULL;
	if (rename(tmp, p->state_file) == -1) {
		ret = -errno;
		goto out;
	}
	dircopy = strdup(p->state_file);
	if (dircopy) {
		int dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd != -1) {
			fsync(dfd);
			close(dfd);
		}
	}
	ret = 0;
out:
	if (fp)
		fclose(fp);
	if (fd != -1)
		close(fd);
	if (ret < 0 && tmp)
		unlink(tmp);
	free(tmp);
	free(dircopy);
	return ret;
}

/* One line "ns/name a.b.c.d|- [v6]"; returns false for a bad line. An
 * address outside the current range (the range was reconfigured) or
 * already taken is dropped, the rest of the line kept. */
static bool load_line(struct em_fakeip_pool *p, char *line)
{
	char *save_ptr, *key, *a4, *a6, *extra;
	key = strtok_r(line, " \t\r\n", &save_ptr);
	a4 = strtok_r(NULL, " \t\r\n", &save_ptr);
	a6 = strtok_r(NULL, " \t\r\n", &save_ptr);
	extra = strtok_r(NULL, " \t\r\n", &save_ptr);
	if (!key || !a4 || extra || !strchr(key, '/') || strlen(key) > 320)
		return false;
	/* names as the registry admits them (guard.h): an edited file cannot
	 * bring in a name no source could */
	char ns[64];
	const char *slash = strchr(key, '/');
	if ((size_t)(slash - key) >= sizeof(ns))
		return false;
	memcpy(ns, key, (size_t)(slash - key));
	ns[slash - key] = '\0';
	if (!em_name_is_dns1123_label(ns) || !em_name_is_dns1035_label(slash + 1))
		return false;
	struct in_addr v4;
	struct in6_addr v6;
	bool ok4 = strcmp(a4, "-") != 0, ok6 = a6 != NULL;
	if (ok4 && inet_pton(AF_INET, a4, &v4) != 1)
		return false;
	if (ok6 && inet_pton(AF_INET6, a6, &v6) != 1)
		return false;
	if (em_strmap_get(&p->names, key))
		return false;	/* duplicate line */
	struct fe *f = fe_get(p, key, true);
	if (!f)
		return false;
	uint32_t o4;
	uint64_t o6;
	if (ok4 && v4_off(p, &v4, &o4) && !owner_get(p, AF_INET, o4) &&
	    owner_set(p, AF_INET, o4, f) == 0) {
		f->has4 = true;
		f->off4 = o4;
	}
	if (ok6 && p->v6 && v6_off(p, &v6, &o6) && !owner_get(p, AF_INET6, o6) &&
	    owner_set(p, AF_INET6, o6, f) == 0) {
		f->has6 = true;
		f->off6 = o6;
	}
	if (!f->has4 && !f->has6)
		fe_forget(p, f);
	return true;
}

static void load(struct em_fakeip_pool *p)
{
	/* Only a regular file of this user, not writable by others: anything
	 * else could be somebody's attempt to choose the addresses. */
	int fd = open(p->state_file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd == -1) {
		if (errno != ENOENT)
			em_warn("fake IP state %s: cannot open: %s", p->state_file, strerror(errno));
		return;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & (S_IWGRP | S_IWOTH))) {
		em_warn("fake IP state %s: not a regular file owned by uid %u and writable only by it; "
			"ignored (it is replaced at the next save)", p->state_file, (unsigned)geteuid());
		close(fd);
		p->dirty = true;
		return;
	}
	FILE *fp = fdopen(fd, "r");
	if (!fp) {
		close(fd);
		return;
	}
	char line[512];
	unsigned lineno = 0, bad = 0;
	while (fgets(line, sizeof(line), fp)) {
		lineno++;
		size_t n = strlen(line);
		if (n == sizeof(line) - 1 && line[n - 1] != '\n') {
			int c;
			while ((c = fgetc(fp)) != EOF && c != '\n')
				;
			bad++;
			continue;
		}
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (!load_line(p, line) && bad++ < 5)
			em_warn("fake IP state %s:%u: bad line ignored", p->state_file, lineno);
	}
	if (bad > 5)
		em_warn("fake IP state %s: %u bad lines ignored in all", p->state_file, bad);
	fclose(fp);
	p->dirty = bad > 0;
}

int em_fakeip_pool_new(const struct em_fakeip_config *cfg, struct em_fakeip_pool **out)
{
	struct em_fakeip_pool *p = calloc(1, sizeof(*p));
	struct em_cidr c;

	*out = NULL;
	if (!p)
		return -ENOMEM;
	em_strmap_init(&p->names);
	em_strmap_init(&p->owners);
	/* Host bits are allowed here and cleared below. */
	if (em_cidr_parse(cfg->v4_cidr ? cfg->v4_cidr : EM_FAKE_IPV4_RANGE, AF_INET,
			  EM_CIDR_HOST_BITS, &c) < 0 || c.plen < 1 || c.plen > 30)
		goto inval;
	uint64_t size = 1ULL << (32 - c.plen);
	uint32_t a4;
	memcpy(&a4, c.addr, 4);
	p->base4 = ntohl(a4) & (uint32_t)~(size - 1);
	p->usable4 = size - 2;
	if (cfg->v6_cidr && cfg->v6_cidr[0]) {
		if (em_cidr_parse(cfg->v6_cidr, AF_INET6, EM_CIDR_HOST_BITS,
				  &c) < 0 || c.plen < 64 || c.plen > 126)
			goto inval;
		memcpy(&p->base6, c.addr, 16);
		p->v6 = true;
		p->host_bits6 = 128u - c.plen;
		for (unsigned bit = c.plen; bit < 128; bit++)
			p->base6.s6_addr[bit / 8] &= (uint8_t)~(0x80 >> (bit % 8));
		p->usable6 = p->host_bits6 == 64 ? UINT64_MAX - 1 : (1ULL << p->host_bits6) - 2;
	}
	p->max_remembered = cfg->max_remembered ? cfg->max_remembered : 4096;
	if (cfg->state_file) {
		p->state_file = strdup(cfg->state_file);
		if (!p->state_file) {
			em_fakeip_pool_free(p);
			return -ENOMEM;
		}
		load(p);
	}
	*out = p;
	return 0;
inval:
	em_fakeip_pool_free(p);
	return -EINVAL;
}

void em_fakeip_pool_free(struct em_fakeip_pool *p)
{
	if (!p)
		return;
	em_strmap_clear(&p->owners, NULL);
	em_strmap_clear(&p->names, free);
	free(p->state_file);
	free(p);
}
