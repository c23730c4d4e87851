package org.edgeage.demo;

import java.io.File;

import org.edgeage.core.BlazeFace;

/** BlazeFace short range (the desktop's face_detection_short_range.tflite) on LiteRT. */
public final class LiteRtDetector implements BlazeFace.Model {
    private final LiteRtRunner r;
    private final int reg, cls;

    public LiteRtDetector(File tflite, int threads) {
        r = new LiteRtRunner(tflite, threads);
        int a = -1, b = -1;
        for (int i = 0; i < r.interpreter.getOutputTensorCount(); i++) {
            String name = r.interpreter.getOutputTensor(i).name();
            if (name.equals("regressors")) a = i;
            if (name.equals("classificators")) b = i;
        }
        if (a < 0 || b < 0) throw new IllegalArgumentException(tflite + ": not BlazeFace (no regressors/classificators outputs)");
        reg = a;
        cls = b;
    }

    @Override
    public void run(float[] input, float[] regressors, float[] classificators) {
        float[][] y = r.runAll(input);
        System.arraycopy(y[reg], 0, regressors, 0, regressors.length);
        System.arraycopy(y[cls], 0, classificators, 0, classificators.length);
    }
}
