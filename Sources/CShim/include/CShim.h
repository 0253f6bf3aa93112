// Umbrella header of the only C in the project. Each area has its own header so
// the pieces stay small and say why they exist.
#pragma once
#include "cshim_reactor.h"
#include "cshim_systemd.h"
#include "cshim_auth.h"
#include "cshim_tls.h"
#include "cshim_maildrop.h"
#include "cshim_process.h"
