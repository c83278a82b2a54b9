"""netvlad's benchmarks, one package: ``python -m benchmarks --help`` lists them, ``python -m benchmarks NAME
--help`` says what one measures. Timing lives here, as ratios measured side by side in one run, never in tests."""
