# The dfu.bin module (image/image*.c) and espdfuctl's offline commands.

# Unit tests: parse, validate, pack; links only the core library.
espdfu_unit_test(test-image SOURCES test-image.c LIBS espdfu-core)
set_tests_properties(test-image PROPERTIES ENVIRONMENT "${ESPDFU_SANITIZER_ENV}" LABELS "image")

# The real espdfuctl binary: inspect and pack, their output and exit codes.
add_test(NAME test-cli-image
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/test-cli-image.sh $<TARGET_FILE:espdfuctl>
                 ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/mkdfu
                 ${CMAKE_CURRENT_BINARY_DIR}/test-cli-image.d)
set_tests_properties(test-cli-image PROPERTIES ENVIRONMENT "${ESPDFU_SANITIZER_ENV}"
                     LABELS "image")
