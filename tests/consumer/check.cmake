# cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DMODEL=... [-DCXX=...] -P check.cmake
# Installs the build in BUILD_DIR to a scratch prefix, builds tests/consumer against it with
# find_package(mobilellm), and runs it on MODEL. Fails on any step's failure.
set(prefix ${BUILD_DIR}/consumer/install)
set(build ${BUILD_DIR}/consumer/build)
file(REMOVE_RECURSE ${BUILD_DIR}/consumer)
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${ARGN}\nfailed (${rc}):\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()
step(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${build} -DCMAKE_PREFIX_PATH=${prefix}
     -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=Release)
step(${CMAKE_COMMAND} --build ${build})
step(${build}/consumer ${MODEL})
message(STATUS "${out}")
