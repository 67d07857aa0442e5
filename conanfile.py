# Conan 2 recipe: a header-only library. `conan create .` builds test_package/ against it.
from conan import ConanFile
from conan.tools.cmake import CMake, CMakeToolchain, cmake_layout
from conan.tools.files import copy
import os


class QuorumregConan(ConanFile):
    name = "quorumreg"
    version = "0.1.0"
    license = "MIT"
    description = ("Cluster-aware registry for C++20: checkpoints to a quorum store (directory or etcd), "
                   "dependency-ordered services, crash-recoverable resource monitors")
    topics = ("cluster", "registry", "etcd", "failover", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    exports_sources = "include/*", "CMakeLists.txt", "cmake/*", "LICENSE", "README.md", "tools/*"
    no_copy_source = True

    def requirements(self):
        self.requires("boost/1.81.0", transitive_headers=True)
        self.requires("openssl/[>=3 <4]", transitive_headers=True)

    def layout(self):
        cmake_layout(self)

    def package_id(self):
        self.info.clear()

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        copy(self, "*", os.path.join(self.source_folder, "include"), os.path.join(self.package_folder, "include"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "quorumreg")
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        core = self.cpp_info.components["core"]
        core.set_property("cmake_target_name", "quorumreg::quorumreg")
        core.requires = ["boost::headers", "openssl::crypto"]
        core.system_libs = ["pthread", "dl"]
        etcd = self.cpp_info.components["etcd"]
        etcd.set_property("cmake_target_name", "quorumreg::etcd")
        etcd.requires = ["core", "boost::json", "openssl::ssl"]
