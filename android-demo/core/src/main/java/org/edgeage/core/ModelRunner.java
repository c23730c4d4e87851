package org.edgeage.core;

import java.io.Closeable;

/** One inference engine (ExecuTorch, LiteRT, OpenCV DNN on the JVM) running one model file. */
public interface ModelRunner extends Closeable {
    /** input: one image, float32, flattened in the manifest's layout; returns the raw outputs [K]. */
    float[] run(float[] input, int[] shape) throws Exception;

    /** e.g. "executorch", "litert", "opencv-dnn" (+ settings) for the check result */
    String describe();
}
