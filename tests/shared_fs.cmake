# The directory store on shared file systems (issue 14, defect 5): the file-system check with a
# faked statfs, and two caching FUSE mounts of one directory acting as two NFS clients. The
# FUSE part is built only where libfuse3 is found (Debian: libfuse3-dev; running it also needs
# /dev/fuse and fusermount3 from fuse3).
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(QR_FUSE3 QUIET IMPORTED_TARGET fuse3)
endif()

quorumreg_test_group(test_shared_fs SOURCES test_shared_fs.cpp)
if(QR_FUSE3_FOUND)
  add_executable(qr_cachefs fuse/qr_cachefs.cpp)
  target_link_libraries(qr_cachefs PRIVATE PkgConfig::QR_FUSE3 quorumreg_warnings)
  target_compile_features(qr_cachefs PRIVATE cxx_std_20) # clang 14 defaults to C++14
  add_dependencies(test_shared_fs qr_cachefs)
  target_compile_definitions(test_shared_fs PRIVATE QR_CACHEFS="$<TARGET_FILE:qr_cachefs>")
endif()
quorumreg_suite(test_shared_fs shared_fs LABELS store TIMEOUT 300)
