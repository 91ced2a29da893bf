# The CUDA backend's build settings and its kernel check program; CMakeLists.txt includes this file once it
# has found the CUDA compiler, cuBLAS and NCCL.

# Hopper (sm_90) unless CUDAARCHS names other targets; the kernels need sm_80 at least (bf16 mma.sync).
if(NOT DEFINED ENV{CUDAARCHS})
  set_target_properties(${PROJECT_NAME} PROPERTIES CUDA_ARCHITECTURES 90)
endif()
set_target_properties(${PROJECT_NAME} PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON)

# native/check/ (check_main.cu and one check_<family>.cu per kernel family) runs every kernel against the CPU
# backend's function for the same job, element by element, so it links the kernels and the CPU reference code,
# not the addon.
file(GLOB LORASERVE_CHECK_KERNELS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/*.cu
     ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/*.cc)
list(FILTER LORASERVE_CHECK_KERNELS EXCLUDE REGEX "/(cuda_backend|device_weights)\\.cu$")
file(GLOB LORASERVE_CHECK_REFERENCE CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/*.cc
     ${CMAKE_CURRENT_SOURCE_DIR}/src/cpu/*.cc)
list(FILTER LORASERVE_CHECK_REFERENCE EXCLUDE REGEX
     "/(addon|contract|js_values|engine|backend_factory|cpu_backend|decoder_layer)\\.cc$")
find_package(Threads REQUIRED)
file(GLOB LORASERVE_CHECK_FAMILIES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/check/check_*.cu)
add_executable(loraserve_kernel_checks ${LORASERVE_CHECK_FAMILIES} ${LORASERVE_CHECK_KERNELS} ${LORASERVE_CHECK_REFERENCE})
set_target_properties(loraserve_kernel_checks PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
                                                         RUNTIME_OUTPUT_DIRECTORY $<TARGET_FILE_DIR:${PROJECT_NAME}>)
if(NOT DEFINED ENV{CUDAARCHS})
  set_target_properties(loraserve_kernel_checks PROPERTIES CUDA_ARCHITECTURES 90)
endif()
target_include_directories(loraserve_kernel_checks PRIVATE ${CBLAS_INCLUDE_DIR})
target_link_libraries(loraserve_kernel_checks PRIVATE CUDA::cudart CUDA::cublas ${OPENBLAS_LIBRARY} Threads::Threads)

# native/check/device_limits.cu measures the copy bandwidth and bf16 GEMM rate that bench/cuda-decode.ts
# divides by.
add_executable(loraserve_device_limits ${CMAKE_CURRENT_SOURCE_DIR}/check/device_limits.cu
                                       ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/gemm.cu
                                       ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/matrix_vector.cu
                                       ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/skinny_gemm.cu)
set_target_properties(loraserve_device_limits PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
                                                         RUNTIME_OUTPUT_DIRECTORY $<TARGET_FILE_DIR:${PROJECT_NAME}>)
if(NOT DEFINED ENV{CUDAARCHS})
  set_target_properties(loraserve_device_limits PROPERTIES CUDA_ARCHITECTURES 90)
endif()
target_link_libraries(loraserve_device_limits PRIVATE CUDA::cudart CUDA::cublas Threads::Threads)
