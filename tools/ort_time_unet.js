// ONNX Runtime (CPU execution provider) forward time of one exported UNet, for tools/compare_unet.py:
// prints the median ms per forward over `reps` repetitions of at least `min_ms` each.
// usage: node ort_time_unet.js MODEL.onnx IN_CHANNELS SIZE LABELS(0|1) BATCH THREADS [reps=5] [min_ms=200]
// ORT_NODE names the onnxruntime-node package folder (npm install --ignore-scripts onnxruntime-node@1.30.0).
const ort = require(process.env.ORT_NODE || 'onnxruntime-node');
const [model, cin, size, labels, batch, threads] = process.argv.slice(2, 8);
const reps = +(process.argv[8] || 5), minMs = +(process.argv[9] || 200);
(async () => {
  // One intra-op pool of THREADS threads, graph optimisations on: how a C++ deployment would run it.
  const s = await ort.InferenceSession.create(model, {intraOpNumThreads: +threads, interOpNumThreads: 1,
    graphOptimizationLevel: 'all', executionMode: 'sequential'});
  const b = +batch, n = b * cin * size * size;
  const feeds = {x: new ort.Tensor('float32', new Float32Array(n).fill(0.5), [b, +cin, +size, +size]),
                 t: new ort.Tensor('float32', new Float32Array(b).fill(500), [b])};
  if (+labels) feeds.labels = new ort.Tensor('int64', new BigInt64Array(b).fill(3n), [b]);
  for (let i = 0; i < 3; i++) await s.run(feeds);
  const times = [];
  for (let r = 0; r < reps; r++) {
    let k = 0;
    const t0 = process.hrtime.bigint();
    while (true) {
      await s.run(feeds);
      k++;
      if (Number(process.hrtime.bigint() - t0) / 1e6 >= minMs) break;
    }
    times.push(Number(process.hrtime.bigint() - t0) / 1e6 / k);
  }
  times.sort((a, c) => a - c);
  console.log(times[Math.floor(times.length / 2)].toFixed(4));
})();
