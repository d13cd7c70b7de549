/* first_backend.c — an example balancer plugin: "first-backend" sends every
 * request to the lowest-numbered backend that is not to be avoided and has
 * not failed its last attempt (an active/standby policy). It shows the whole
 * plugin contract: one header, one ops struct, one entry point, a
 * thread-safe instance, and pick/release pairing.
 *
 * Build: cc -shared -fPIC -I<prefix>/include first_backend.c -o first-backend.so
 * Use:   lb-plugin = /path/first-backend.so   and   lb-strategy = first-backend
 *
 * Built with -DEM_LB_TEST_BAD_ABI it declares a wrong ABI version (a unit
 * test checks that the daemon refuses it). */
#include <edgemesh/balancer.h>
#include <stdatomic.h>
#include <stdlib.h>

#ifdef EM_LB_TEST_BAD_ABI
#define PLUGIN_ABI (EM_BALANCER_ABI_VERSION + 100)
#else
#define PLUGIN_ABI EM_BALANCER_ABI_VERSION
#endif

struct first {
	size_t n;
	_Atomic unsigned char failed[];	/* last outcome per backend was a failure */
};

/* Picks not yet released, over all instances. Exported only so the unit test
 * can check the daemon's pick/release pairing; a real plugin needs nothing
 * but em_balancer_plugin(). */
static _Atomic long in_flight;
long first_backend_in_flight(void);
long first_backend_in_flight(void)
{
	return atomic_load(&in_flight);
}

static void *first_create(const struct em_balancer_port *port,
			  const struct em_balancer_params *params)
{
	struct first *f = calloc(1, sizeof(*f) + port->n_backends);

	(void)params;
	if (f)
		f->n = port->n_backends;
	return f;
}

static int first_pick(void *instance, const struct em_balancer_request *req)
{
	struct first *f = instance;
	int fallback = -1;

	for (size_t i = 0; i < f->n; i++) {
		if ((int)i == req->avoid)
			continue;
		if (fallback < 0)
			fallback = (int)i;
		if (!atomic_load(&f->failed[i])) {
			atomic_fetch_add(&in_flight, 1);
			return (int)i;
		}
	}
	if (fallback >= 0)
		atomic_fetch_add(&in_flight, 1);
	return fallback;
}

static void first_release(void *instance, int index, const struct em_balancer_result *res)
{
	struct first *f = instance;
	enum em_balancer_outcome outcome = res->outcome;

	atomic_fetch_sub(&in_flight, 1);
	if (index >= 0 && (size_t)index < f->n)
		atomic_store(&f->failed[index], outcome != EM_BALANCER_OK);
}

static void first_destroy(void *instance)
{
	free(instance);
}

static const struct em_balancer_ops first_backend_ops = {
	.abi_version = PLUGIN_ABI,
	.name = "first-backend",
	.size = sizeof(struct em_balancer_ops),
	.create = first_create,
	.pick = first_pick,
	.release = first_release,
	.destroy = first_destroy,
};

const struct em_balancer_ops *em_balancer_plugin(void);
const struct em_balancer_ops *em_balancer_plugin(void)
{
	return &first_backend_ops;
}
