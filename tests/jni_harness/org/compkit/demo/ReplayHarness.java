package org.compkit.demo;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Drives libcompkit_jni exactly as the Android app does, with a scorer that replays the windows the
 * Python reference scored (keyed by their unpadded ids), so compressed texts must match Python's.
 *
 *   java -Djava.library.path=DIR -cp CLASSES org.compkit.demo.ReplayHarness TOKENIZER_DIR WINDOWS CASES OUT
 *
 * WINDOWS: one line per window "ids,csv<TAB>keep,csv<TAB>z,csv". CASES: one line per compression,
 * "weight rate target_token base64(force tokens joined by U+0001) force_reserve_digit drop_consecutive
 * token_to_word_first base64(text)", tab-separated, flags 0/1.
 * OUT: per case "base64(compressed)<TAB>kept bits<TAB>origin<TAB>compressed tokens<TAB>windows<TAB>stages",
 * or "ERROR<TAB>base64(message)"; then the probe lines named below.
 */
public final class ReplayHarness {
    private static final class Window {
        final float[] keep;
        final float[] z;

        Window(float[] keep, float[] z) {
            this.keep = keep;
            this.z = z;
        }
    }

    private static float[] floats(String csv) {
        String[] parts = csv.split(",");
        float[] out = new float[parts.length];
        for (int i = 0; i < parts.length; i++) out[i] = Float.parseFloat(parts[i]);
        return out;
    }

    private static String b64(String s) {
        return Base64.getEncoder().encodeToString(s.getBytes(StandardCharsets.UTF_8));
    }

    public static void main(String[] args) throws IOException {
        Map<String, Window> recorded = new HashMap<>();
        for (String line : Files.readAllLines(Path.of(args[1]), StandardCharsets.UTF_8)) {
            String[] f = line.split("\t");
            recorded.put(f[0], new Window(floats(f[1]), floats(f[2])));
        }
        List<int[]> seen = new ArrayList<>();
        MoosScorer replay = (ids, mask, keep, z) -> {
            int n = 0;
            while (n < mask.length && mask[n] == 1) n++;
            int[] real = Arrays.copyOf(ids, n);
            seen.add(new int[] {ids.length, n});
            StringBuilder key = new StringBuilder();
            for (int i = 0; i < n; i++) key.append(i == 0 ? "" : ",").append(real[i]);
            Window w = recorded.get(key.toString());
            if (w == null) throw new IllegalStateException("window of " + n + " ids was never scored by Python");
            System.arraycopy(w.keep, 0, keep, 0, n);
            System.arraycopy(w.z, 0, z, 0, n);
        };
        int[] buckets = {128, 256, 512};
        List<String> out = new ArrayList<>();
        Map<String, Long> handles = new HashMap<>();
        for (String line : Files.readAllLines(Path.of(args[2]), StandardCharsets.UTF_8)) {
            String[] f = line.split("\t");
            String text = new String(Base64.getDecoder().decode(f[7]), StandardCharsets.UTF_8);
            String joined = new String(Base64.getDecoder().decode(f[3]), StandardCharsets.UTF_8);
            String[] force = joined.isEmpty() ? new String[0] : joined.split("\u0001", -1);
            long h = handles.computeIfAbsent(f[0], w -> CompkitNative.moosCreate(args[0], buckets, true, Double.parseDouble(w), replay));
            try {
                MoosResult r = CompkitNative.moosCompress(h, text, Double.parseDouble(f[1]), Integer.parseInt(f[2]), force,
                        f[4].equals("1"), f[5].equals("1"), f[6].equals("1"));
                StringBuilder bits = new StringBuilder();
                for (boolean k : r.kept) bits.append(k ? '1' : '0');
                StringBuilder stages = new StringBuilder();
                for (int i = 0; i < r.stageNames.length; i++) stages.append(i == 0 ? "" : ",").append(r.stageNames[i]).append('=').append(r.stageMs[i]);
                if (r.words.length != r.kept.length) throw new IllegalStateException("words and kept differ in length");
                out.add(b64(r.compressedText) + "\t" + bits + "\t" + r.originTokens + "\t" + r.compressedTokens + "\t" + r.windows + "\t" + stages);
            } catch (CompkitException e) {
                out.add("ERROR\t" + b64(e.getMessage()));
            }
        }
        // Probes of the glue's error paths and of the padding it forwards.
        long h = handles.values().iterator().next();
        out.add("PROBE empty\t" + probe(() -> CompkitNative.moosCompress(h, "", 0.5, -1, new String[0], false, false, false)));
        out.add("PROBE unrecorded\t" + probe(() -> CompkitNative.moosCompress(h, "A sentence Python never scored, about zebras.", 0.5, -1, new String[0], false, false, false)));
        out.add("PROBE bad_rate\t" + probe(() -> CompkitNative.moosCompress(h, "Some text.", 1.5, -1, new String[0], false, false, false)));
        out.add("PROBE missing_tokenizer\t" + probe(() -> CompkitNative.moosCreate(args[0] + "/nope", buckets, true, 0.0, replay)));
        out.add("PROBE evo_tie\t" + Arrays.toString(CompkitNative.evoSelect(new float[] {0.5f, 1f, 1f, 1f, 0f}, 0, 2.5)));
        out.add("PROBE evo_k\t" + Arrays.toString(CompkitNative.evoSelect(new float[] {3f, 1f, 2f, 5f}, 2, 0.0)));
        out.add("PROBE evo_nan\t" + probe(() -> CompkitNative.evoSelect(new float[] {Float.NaN, 1f}, 1, 0.0)));
        StringBuilder lens = new StringBuilder();
        for (int[] s : seen) lens.append(lens.length() == 0 ? "" : ",").append(s[0]).append(':').append(s[1]);
        out.add("PROBE window_lengths\t" + lens);
        for (long each : handles.values()) CompkitNative.moosDestroy(each);
        CompkitNative.moosDestroy(0L);  // a closed handle is a no-op, never a crash
        Files.write(Path.of(args[3]), out, StandardCharsets.UTF_8);
    }

    private interface Call {
        Object run();
    }

    private static String probe(Call call) {
        try {
            Object r = call.run();
            return "OK " + (r instanceof int[] ? Arrays.toString((int[]) r) : String.valueOf(r));
        } catch (CompkitException e) {
            return "CompkitException " + b64(e.getMessage());
        } catch (RuntimeException e) {
            return e.getClass().getSimpleName() + " " + b64(String.valueOf(e.getMessage()));
        }
    }
}
