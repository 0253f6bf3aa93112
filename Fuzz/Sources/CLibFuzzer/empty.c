// A C target needs one source file; the module is only the declaration in include/.
#include "CLibFuzzer.h"
