# The DFU engine (dfu/dfu.c) against the ROM model (tests/emu/dfu-model.c),
# over an in-memory transport on a virtual clock: no USB, no sleeping.
espdfu_unit_test(test-dfu SOURCES test-dfu.c emu/dfu-model.c LIBS espdfud-lib)
set_tests_properties(test-dfu PROPERTIES ENVIRONMENT "${ESPDFU_SANITIZER_ENV}")
