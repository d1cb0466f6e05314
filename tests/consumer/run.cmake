# ctest driver: install the built library into WORK/prefix, then configure, build and run the
# consumer project against it, with examples/embed_minimal.cpp (EMBED_SOURCE) on the shipped model
# (EMBED_MODEL) and an image (EMBED_IMAGE). Any failing step fails the test.
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "package_consumer: step failed (${result}): ${ARGN}")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK})
step(${CMAKE_COMMAND} --install ${AXIOMATIC_BUILD} --prefix ${WORK}/prefix)
step(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE} -B ${WORK}/build -DCMAKE_PREFIX_PATH=${WORK}/prefix -DCMAKE_BUILD_TYPE=Release
     -DEMBED_SOURCE=${EMBED_SOURCE})
step(${CMAKE_COMMAND} --build ${WORK}/build)
step(${WORK}/build/consumer)
step(${WORK}/build/embed_minimal ${EMBED_MODEL} ${EMBED_IMAGE})
