package org.edgeage.jvm;

import java.io.File;

import org.edgeage.core.ModelRunner;
import org.opencv.core.Core;
import org.opencv.core.CvType;
import org.opencv.core.Mat;
import org.opencv.dnn.Dnn;
import org.opencv.dnn.Net;

/** ONNX on the JVM through OpenCV's DNN module (Debian libopencv-java 4.6). */
public final class OpenCvRunner implements ModelRunner {
    private final Net net;
    private final int threads;

    public OpenCvRunner(File onnx, int threads) {
        System.loadLibrary(Core.NATIVE_LIBRARY_NAME);
        Core.setNumThreads(threads);
        this.threads = threads;
        net = Dnn.readNetFromONNX(onnx.getPath());
        net.setPreferableBackend(Dnn.DNN_BACKEND_OPENCV);
        net.setPreferableTarget(Dnn.DNN_TARGET_CPU);
    }

    @Override
    public float[] run(float[] input, int[] shape) {
        Mat blob = new Mat(shape, CvType.CV_32F);
        blob.put(new int[shape.length], input);
        net.setInput(blob);
        Mat out = net.forward();
        float[] y = new float[(int) out.total()];
        out.reshape(1, 1).get(0, 0, y);
        return y;
    }

    @Override
    public String describe() {
        return "opencv-dnn " + Core.VERSION + " (CPU, threads " + threads + ")";
    }

    @Override
    public void close() {}
}
