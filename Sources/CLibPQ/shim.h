// libpq-fe.h is in /usr/include/postgresql on Debian; pkg-config libpq adds that path.
#pragma once
#include <libpq-fe.h>
