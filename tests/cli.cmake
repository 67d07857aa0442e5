# qreg, the admin tool, driven through its command line (suite cli, label cli). Needs the tools.
if(QUORUMREG_BUILD_TOOLS AND EXISTS ${PROJECT_SOURCE_DIR}/tools/CMakeLists.txt) # qreg is defined in tools/
  quorumreg_test_group(test_cli SOURCES test_cli.cpp test_cli_etcd.cpp LIBS Boost::json quorumreg_etcd_separate)
  target_compile_definitions(test_cli PRIVATE QR_QREG_EXE="$<TARGET_FILE:qreg>"
                             QR_CLI_PLUGIN="$<TARGET_FILE:qr_test_plugin_good>")
  add_dependencies(test_cli qreg qr_test_plugin_good)
  quorumreg_suite(test_cli cli LABELS cli TIMEOUT 600)
  quorumreg_suite(test_cli cli_etcd LABELS "cli;etcd" TIMEOUT 600 RUN_SERIAL)
endif()
