#include "cshim_reactor.h"
