package org.edgeage.demo;

import java.io.File;

import org.edgeage.core.ModelRunner;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.Module;
import org.pytorch.executorch.Tensor;

/** ExecuTorch (.pte, XNNPACK-delegated as exported by edgeage). */
public final class ExecuTorchRunner implements ModelRunner {
    private final Module module;

    public ExecuTorchRunner(File pte, int threads) {
        module = Module.load(pte.getAbsolutePath());
    }

    @Override
    public float[] run(float[] input, int[] shape) {
        long[] s = new long[shape.length];
        for (int i = 0; i < s.length; i++) s[i] = shape[i];
        EValue[] out = module.forward(EValue.from(Tensor.fromBlob(input, s)));
        return out[0].toTensor().getDataAsFloatArray();
    }

    @Override
    public String describe() {
        return "executorch Module (default threads)";
    }

    @Override
    public void close() {
        module.destroy();
    }
}
