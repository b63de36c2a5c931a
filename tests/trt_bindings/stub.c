/* Stand-ins for the TensorRT C entry points that the Python bindings link against.
 *
 * The `tensorrt` bindings wheels (tensorrt.so) need libnvinfer, libnvinfer_plugin and
 * libnvonnxparser (8.6: also libnvparsers) only to resolve these symbols at import time.
 * Every factory returns NULL, so `import tensorrt` gives the real classes, enums and
 * pybind signatures while nothing can be built. setup.sh compiles this one file under
 * each soname a wheel needs. The four 8.6 UFF/Caffe symbols are C++ names, defined here
 * by their mangled spelling. */
#include <stddef.h>

void *createInferBuilder_INTERNAL(void *logger, int version) { return NULL; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) { return NULL; }
void *createInferRuntime_INTERNAL(void *logger, int version) { return NULL; }
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) { return NULL; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) { return NULL; }
void *getBuilderPluginRegistry(int capability) { return NULL; }
void *getPluginRegistry(void) { return NULL; }
int getNvOnnxParserVersion(void) { return 0; }
int initLibNvInferPlugins(void *logger, const char *ns) { return 0; }

/* TensorRT 8.6 only (libnvparsers.so.8). */
void *_ZN11nvuffparser15createUffParserEv(void) { return NULL; }
void _ZN11nvuffparser8FieldMapC1EPKcPKvNS_9FieldTypeEi(void *self, const char *name,
                                                        const void *data, int type, int length) {}
void *_ZN14nvcaffeparser117createCaffeParserEv(void) { return NULL; }
void _ZN14nvcaffeparser123shutdownProtobufLibraryEv(void) {}
