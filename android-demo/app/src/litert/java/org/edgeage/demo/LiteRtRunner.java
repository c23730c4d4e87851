package org.edgeage.demo;

import java.io.File;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.HashMap;
import java.util.Map;

import org.edgeage.core.ModelRunner;
import org.tensorflow.lite.DataType;
import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.Tensor;

/**
 * LiteRT (.tflite) through org.tensorflow.lite.Interpreter (com.google.ai.edge.litert:litert).
 * Float inputs/outputs as exported by litert-torch; int8/uint8 tensors are (de)quantised with
 * their own scale and zero point. Only in the Gradle build: no registry reachable from the
 * command-line build has the LiteRT Java library.
 */
public final class LiteRtRunner implements ModelRunner {
    final Interpreter interpreter;
    private final int threads;

    public LiteRtRunner(File tflite, int threads) {
        Interpreter.Options o = new Interpreter.Options();
        o.setNumThreads(threads);
        interpreter = new Interpreter(tflite, o);
        this.threads = threads;
    }

    static ByteBuffer pack(Tensor t, float[] x) {
        ByteBuffer b = ByteBuffer.allocateDirect(t.numBytes()).order(ByteOrder.nativeOrder());
        if (t.dataType() == DataType.FLOAT32) {
            b.asFloatBuffer().put(x);
        } else {
            float scale = t.quantizationParams().getScale();
            int zero = t.quantizationParams().getZeroPoint();
            boolean signed = t.dataType() == DataType.INT8;
            for (float v : x) {
                long q = Math.round(v / scale) + zero;
                b.put((byte) Math.max(signed ? -128 : 0, Math.min(signed ? 127 : 255, q)));
            }
        }
        return b;
    }

    static float[] unpack(Tensor t, ByteBuffer b) {
        b.rewind();
        float[] y = new float[t.numElements()];
        if (t.dataType() == DataType.FLOAT32) {
            b.asFloatBuffer().get(y);
            return y;
        }
        float scale = t.quantizationParams().getScale();
        int zero = t.quantizationParams().getZeroPoint();
        for (int i = 0; i < y.length; i++)
            y[i] = ((t.dataType() == DataType.INT8 ? b.get() : b.get() & 0xff) - zero) * scale;
        return y;
    }

    /** One input, every output in the interpreter's order. */
    float[][] runAll(float[] input) {
        Map<Integer, Object> outs = new HashMap<Integer, Object>();
        for (int i = 0; i < interpreter.getOutputTensorCount(); i++)
            outs.put(i, ByteBuffer.allocateDirect(interpreter.getOutputTensor(i).numBytes()).order(ByteOrder.nativeOrder()));
        interpreter.runForMultipleInputsOutputs(new Object[] {pack(interpreter.getInputTensor(0), input)}, outs);
        float[][] y = new float[outs.size()][];
        for (int i = 0; i < y.length; i++) y[i] = unpack(interpreter.getOutputTensor(i), (ByteBuffer) outs.get(i));
        return y;
    }

    @Override
    public float[] run(float[] input, int[] shape) {
        return runAll(input)[0];
    }

    @Override
    public String describe() {
        return "litert Interpreter (threads " + threads + ")";
    }

    @Override
    public void close() {
        interpreter.close();
    }
}
