package org.edgeage.demo;

import java.io.File;
import java.lang.reflect.InvocationTargetException;

import org.edgeage.core.BlazeFace;
import org.edgeage.core.ModelRunner;

/**
 * Loads the runtime for a model file by reflection, so an APK built without a runtime's library
 * (the command-line build has no LiteRT) still installs and says what is missing.
 * executorch: {@link ExecuTorchRunner}; litert: LiteRtRunner and LiteRtDetector (src/litert, Gradle build only).
 */
final class Runners {
    private Runners() {}

    static ModelRunner model(String backend, File file, int threads) throws Exception {
        if ("executorch".equals(backend)) return (ModelRunner) create("org.edgeage.demo.ExecuTorchRunner", file, threads);
        if ("litert".equals(backend)) return (ModelRunner) create("org.edgeage.demo.LiteRtRunner", file, threads);
        throw new IllegalArgumentException(file.getName() + ": no Android runtime for backend " + backend
                + " (bundle a .pte (executorch) or .tflite (litert) artifact)");
    }

    static BlazeFace.Model detector(File tflite, int threads) throws Exception {
        return (BlazeFace.Model) create("org.edgeage.demo.LiteRtDetector", tflite, threads);
    }

    private static Object create(String cls, File file, int threads) throws Exception {
        try {
            return Class.forName(cls).getConstructor(File.class, int.class).newInstance(file, threads);
        } catch (ClassNotFoundException | NoClassDefFoundError | UnsatisfiedLinkError e) {
            throw new UnsupportedOperationException(cls + " is not in this APK or its runtime library is missing ("
                    + e + "); the command-line build (build-apk.sh) has no LiteRT and no fbjni: build with Gradle", e);
        } catch (InvocationTargetException e) {
            Throwable t = e.getCause();
            if (t instanceof LinkageError)
                throw new UnsupportedOperationException(cls + ": runtime library missing (" + t + "); build with Gradle", t);
            throw t instanceof Exception ? (Exception) t : new RuntimeException(t);
        }
    }
}
