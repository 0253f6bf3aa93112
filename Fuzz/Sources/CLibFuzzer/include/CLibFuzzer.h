// libFuzzer's driver entry point (compiler-rt's FuzzerInterface.h / FuzzerDriver.cpp). The
// targets call it from their own `main` instead of linking libFuzzer's: SwiftPM links every
// executable with `--defsym main=<module>_main` (so tests can link executables), which breaks
// the usual `-parse-as-library` recipe (swiftlang/swift-package-manager#4522).
#ifndef CLIBFUZZER_H
#define CLIBFUZZER_H
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*UserCb)(const uint8_t *Data, size_t Size));

#endif
