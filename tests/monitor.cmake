# Resource types and monitors: test plugins (MODULE libraries built from one C source),
# the monitor executable, and the test_monitor executable with suites resource_types and
# resource_monitor (label monitor).
set(QR_TEST_PLUGIN_DIR ${CMAKE_CURRENT_BINARY_DIR}/plugins)
set(qr_plugin_targets)
foreach(spec IN ITEMS good:1 crash:2 hang:3 wrongtype:4 nostartup:5 loadcrash:6 alt:7)
  string(REPLACE ":" ";" kv ${spec})
  list(GET kv 0 name)
  list(GET kv 1 kind)
  add_library(qr_test_plugin_${name} MODULE plugins/test_plugin.c)
  target_compile_definitions(qr_test_plugin_${name} PRIVATE QR_PLUGIN_KIND=${kind})
  target_include_directories(qr_test_plugin_${name} PRIVATE ${PROJECT_SOURCE_DIR}/include)
  target_compile_options(qr_test_plugin_${name} PRIVATE -Wall -Wextra -Werror)
  target_link_libraries(qr_test_plugin_${name} PRIVATE ${CMAKE_DL_LIBS} Threads::Threads)
  set_target_properties(qr_test_plugin_${name} PROPERTIES PREFIX "" OUTPUT_NAME qr_plugin_${name}
                        LIBRARY_OUTPUT_DIRECTORY ${QR_TEST_PLUGIN_DIR} C_VISIBILITY_PRESET hidden)
  list(APPEND qr_plugin_targets qr_test_plugin_${name})
endforeach()

# A hostile plugin that attacks the controller's channel from inside its monitor (monitor_boundary).
add_library(qr_test_plugin_hostile MODULE plugins/hostile_plugin.c)
target_include_directories(qr_test_plugin_hostile PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_compile_options(qr_test_plugin_hostile PRIVATE -Wall -Wextra -Werror)
set_target_properties(qr_test_plugin_hostile PROPERTIES PREFIX "" OUTPUT_NAME qr_plugin_hostile
                      LIBRARY_OUTPUT_DIRECTORY ${QR_TEST_PLUGIN_DIR} C_VISIBILITY_PRESET hidden)
list(APPEND qr_plugin_targets qr_test_plugin_hostile)

# The monitor executable normally comes from tools/; build it here when tools are off.
if(NOT (QUORUMREG_BUILD_TOOLS AND EXISTS ${PROJECT_SOURCE_DIR}/tools/CMakeLists.txt))
  add_executable(quorumreg_monitor ${PROJECT_SOURCE_DIR}/tools/quorumreg_monitor.cpp)
  target_link_libraries(quorumreg_monitor PRIVATE quorumreg::quorumreg quorumreg_warnings)
endif()

quorumreg_test_group(test_monitor SOURCES test_resource_types.cpp test_resource_monitor.cpp)
target_compile_definitions(test_monitor PRIVATE
  QR_TEST_PLUGIN_DIR="${QR_TEST_PLUGIN_DIR}"
  QR_TEST_MONITOR_EXE="$<TARGET_FILE:quorumreg_monitor>")
add_dependencies(test_monitor quorumreg_monitor ${qr_plugin_targets})
quorumreg_suite(test_monitor resource_types LABELS monitor TIMEOUT 600)
quorumreg_suite(test_monitor resource_monitor LABELS monitor TIMEOUT 900)
quorumreg_suite(test_monitor monitor_supervision LABELS monitor monitor_supervision TIMEOUT 300)
quorumreg_suite(test_monitor monitor_boundary LABELS monitor monitor_boundary TIMEOUT 300)
