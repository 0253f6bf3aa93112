#include "cshim_tls.h"
