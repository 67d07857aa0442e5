# The header-only way to install, as fmt and nlohmann/json allow: configure a tree, never build
# it, `cmake --install` it, then build a find_package consumer against the prefix. The tools
# were never built, so they must be absent and the package must still load without them.
# Run by ctest with -DSOURCE -DWORK -DGENERATOR -DCXX -DCTEST.
file(REMOVE_RECURSE ${WORK})
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}")
  endif()
endfunction()
run("configure" ${CMAKE_COMMAND} -S ${SOURCE} -B ${WORK}/build -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${CXX})
run("install of a configured, unbuilt tree" ${CMAKE_COMMAND} --install ${WORK}/build --prefix ${WORK}/prefix)
foreach(f include/quorumreg/quorumreg.hpp share/cmake/quorumreg/quorumregConfig.cmake)
  if(NOT EXISTS ${WORK}/prefix/${f})
    message(FATAL_ERROR "${f} was not installed")
  endif()
endforeach()
foreach(f bin/qreg bin/quorumreg_monitor)
  if(EXISTS ${WORK}/prefix/${f})
    message(FATAL_ERROR "${f} was installed although it was never built")
  endif()
endforeach()
run("find_package consumer" ${CTEST} --build-and-test ${SOURCE}/tests/cmake/find_package ${WORK}/consumer
    --build-generator ${GENERATOR}
    --build-options -DCMAKE_PREFIX_PATH=${WORK}/prefix -DCMAKE_CXX_COMPILER=${CXX} -DQR_EXPECT_MONITOR=OFF
    --test-command find_package_consumer)
message(STATUS "an unbuilt tree installs the headers and the package, without the tools")
