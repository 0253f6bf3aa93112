#include "cshim_systemd.h"
