#include "cshim_auth.h"
