# Fault injection (issue 10): every write/fsync/rename/open/mmap/lock call site of the hive
# and the directory store fails in turn with ENOSPC, EIO and EACCES (label "fault").
quorumreg_test_group(test_fault SOURCES test_fault.cpp)
quorumreg_suite(test_fault fault LABELS fault TIMEOUT 900)
