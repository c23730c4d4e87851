package org.edgeage.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;

import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/** Bundle opening: both artifact.files forms, the sha256 check, labels. */
public class BundleTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    static void write(File f, String s) throws IOException {
        f.getParentFile().mkdirs();
        FileOutputStream out = new FileOutputStream(f);
        out.write(s.getBytes("UTF-8"));
        out.close();
    }

    File bundle(String files) throws IOException {
        File d = tmp.newFolder();
        write(new File(d, "model.pte"), "not really a model");
        write(new File(d, "manifest.json"), "{\"readout\": {\"type\": \"expectation\", \"age_min\": 0, \"age_max\": 100},"
                + "\"preprocess\": {\"crop\": {\"margin\": 1.0, \"shift_y\": 0.0, \"crop_size\": 96, \"policy\": \"detect\"},"
                + "\"normalize\": {\"input_size\": 64, \"mean\": [0.5, 0.5, 0.5], \"std\": [0.25, 0.25, 0.25],"
                + "\"channel_order\": \"RGB\", \"layout\": \"NCHW\"}}, \"model\": {\"gem_ps\": [1.0, Infinity]},"
                + "\"artifact\": {\"target\": \"executorch\", \"precision\": \"fp32\", \"files\": " + files + "}}");
        write(new File(d, "check/labels.csv"), "file,age\n0000.png,23\nodd,name.png,7.5\n");
        return d;
    }

    static final String SHA = "b0c7b8e9a1f4e35d3fb2d3a1b1dd3f70b3d0c30e31f8be5bb9c1e7c33e1f0b0a";

    @Test
    public void opensAndVerifiesBothFileListForms() throws IOException {
        String sha = Io.sha256(new File(bundle("[]"), "model.pte"));
        for (String files : new String[] {"[{\"name\": \"model.pte\", \"sha256\": \"" + sha + "\", \"size\": 18}]",
                "{\"model.pte\": {\"sha256\": \"" + sha + "\"}}", "{\"model.pte\": \"" + sha + "\"}"}) {
            Bundle b = Bundle.open(bundle(files));
            assertEquals("executorch", b.backend);
            assertEquals(sha, b.sha256);
            assertEquals(64, b.normalize.inputSize);
            assertEquals(2, b.checkSamples().size());
            assertEquals("odd,name.png", b.checkSamples().get(1).file);
            assertEquals(7.5, b.checkSamples().get(1).age, 0);
        }
    }

    @Test
    public void refusesAModifiedModel() throws IOException {
        try {
            Bundle.open(bundle("[{\"name\": \"model.pte\", \"sha256\": \"" + SHA + "\", \"size\": 18}]"));
            fail("a wrong sha256 must be refused");
        } catch (IOException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("sha256") && e.getMessage().contains("corrupted"));
        }
    }

    @Test(expected = IOException.class)
    public void refusesAMissingManifest() throws IOException {
        Bundle.open(tmp.newFolder());
    }
}
