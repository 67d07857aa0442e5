# Header-only: install the headers and the CMake package (tests, examples and tools off).
# SOURCE_PATH: an overlay port used from this repository builds the checkout it lives in.
set(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../..")

vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        -DQUORUMREG_BUILD_TESTS=OFF
        -DQUORUMREG_BUILD_EXAMPLES=OFF
        -DQUORUMREG_BUILD_TOOLS=OFF
        -DQUORUMREG_BUILD_BENCH=OFF
        -DQUORUMREG_INSTALL=ON
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME quorumreg CONFIG_PATH share/cmake/quorumreg)
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug" "${CURRENT_PACKAGES_DIR}/lib")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
