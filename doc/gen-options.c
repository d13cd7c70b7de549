/* gen-options.c — build-time tool: copies the man page source (scdoc) from
 * stdin to stdout, replacing the line "@OPTIONS@" by the daemon's option
 * table, so the page lists exactly the options --help lists. */
#include <stdio.h>
#include <string.h>

#include "daemon/config.h"

/* scdoc treats \, * and _ as markup. */
static void put_escaped(const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '*' || *s == '_')
			putchar('\\');
		putchar(*s);
	}
}

static void put_options(void)
{
	struct em_config_option o;

	for (size_t i = 0; em_config_option_at(i, &o); i++) {
		if (o.short_flag)
			printf("*-%c*, ", o.short_flag);
		printf("*--");
		put_escaped(o.name);
		printf("*");
		if (o.takes_value) {
			printf("=_");
			put_escaped(o.metavar);
			printf("_");
		}
		printf("\n\t");
		put_escaped(o.help);
		printf(".");
		if (o.repeatable)
			printf(" May be given more than once.");
		if (o.def && o.def[0]) {
			printf(" Default: *");
			put_escaped(o.def);
			printf("*.");
		}
		printf("\n\n");
	}
}

int main(void)
{
	char line[4096];

	while (fgets(line, sizeof(line), stdin)) {
		if (strcmp(line, "@OPTIONS@\n") == 0)
			put_options();
		else
			fputs(line, stdout);
	}
	return ferror(stdout) ? 1 : 0;
}
