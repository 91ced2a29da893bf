# Tensor parallelism's communicators (src/comm/): the tcp rendezvous store always; Gloo for the CPU when CMake
# finds it (libgloo-dev); NCCL in the CUDA build. CMakeLists.txt includes this after the addon target exists.

find_package(Threads REQUIRED)
find_package(Gloo CONFIG QUIET)

file(GLOB LORASERVE_COMM_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/comm/*.cc)
if(NOT Gloo_FOUND)
  list(FILTER LORASERVE_COMM_SOURCES EXCLUDE REGEX "/gloo_[^/]*\\.cc$")
endif()
target_sources(${PROJECT_NAME} PRIVATE ${LORASERVE_COMM_SOURCES})
target_link_libraries(${PROJECT_NAME} PRIVATE Threads::Threads)

if(LORASERVE_WITH_CUDA)
  target_sources(${PROJECT_NAME} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src/comm/nccl_communicator.cu)
endif()

if(Gloo_FOUND)
  message(STATUS "loraserve: Gloo found; CPU tensor parallelism on")
  target_compile_definitions(${PROJECT_NAME} PRIVATE LORASERVE_WITH_GLOO)
  target_link_libraries(${PROJECT_NAME} PRIVATE gloo)

  # native/check/comm_check.cc runs one rank of a group through every collective (test/communicator.test.ts
  # starts the ranks); it links the communicators alone, not the addon.
  add_executable(loraserve_comm_checks ${CMAKE_CURRENT_SOURCE_DIR}/check/comm_check.cc ${LORASERVE_COMM_SOURCES})
  set_target_properties(loraserve_comm_checks PROPERTIES RUNTIME_OUTPUT_DIRECTORY $<TARGET_FILE_DIR:${PROJECT_NAME}>)
  target_compile_definitions(loraserve_comm_checks PRIVATE LORASERVE_WITH_GLOO)
  target_compile_options(loraserve_comm_checks PRIVATE -Wall -Wextra -O2)
  target_link_libraries(loraserve_comm_checks PRIVATE gloo Threads::Threads)
else()
  message(STATUS "loraserve: Gloo not found; CPU tensor parallelism off (apt-get install libgloo-dev)")
endif()
