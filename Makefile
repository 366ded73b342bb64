# seal: SEAL in C. `make` builds ./seal, `make test` runs the Check suite on
# both matmul paths (OpenBLAS and the plain-loop reference), `make bench` runs
# the CPU benchmarks beside PyTorch. With nvcc on the PATH ./seal also holds
# the CUDA backend (kernels.cu; `make CUDA=0` leaves it out); `make gpu-check`
# and `make bench-gpu` need a GPU, `make test-cuda-emu` runs the CUDA code on
# the CPU. `make MPI=1` builds ./seal with mpicc for `mpirun -n K ./seal ...`.
CC      ?= gcc
CFLAGS  ?= -O3 -march=native
CFLAGS  += -D_GNU_SOURCE -std=c11 -Wall -Wextra -fopenmp -I.
LDLIBS  := -lcjson -lpcre2-8 -licuuc -lm
PYTHON  ?= /usr/bin/python3
BLAS    ?= 1

SRC := util.c safetensors.c model.c weights.c checkpoint.c train.c backend.c verify.c generate.c constrain.c tokenizer.c tokenize.c run.c ranks.c restem.c arc.c fewshot.c demo_tasks.c demo.c gguf.c chat.c squad.c knowledge.c demo_knowledge.c plot.c
TEST_SRC := test/test_main.c test/test_model.c test/test_io.c test/test_tokenizer.c test/test_arc.c test/test_demo.c test/test_restem.c test/test_gguf.c test/test_squad.c test/test_limits.c
TEST_SRC += test/test_kernels_math.c test/test_plot.c test/test_demo_knowledge.c test/test_constrain.c

ifeq ($(BLAS),1)
VARIANT := blas
VFLAGS  := -DUSE_BLAS
VLIBS   := -lopenblas
else
VARIANT := ref
endif

# CUDA: kernels.cu is compiled once by nvcc (sm_80 and sm_90) into
# build/kernels.o and linked into ./seal with the static CUDA runtime; cuBLAS
# is opened at run time, when the first model goes to the GPU (loading it
# costs a process ~0.1 s). ./seal still runs where there is no GPU or driver:
# --backend auto falls back to the CPU. The Check binaries stay CPU-only.
NVCC    ?= $(shell command -v nvcc 2> /dev/null)
# nvcc compiles the host code with g++: no g++, no CUDA
CUDA    ?= $(if $(and $(NVCC),$(shell command -v g++ 2> /dev/null)),1,0)
NICE    ?= nice -n 10
NVFLAGS ?= -O3 -std=c++17 --threads 2 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
           -Xcompiler -Wall,-Wextra
ifeq ($(CUDA),1)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_OBJ  := build/kernels.o
CUDA_DEF  := -DSEAL_CUDA
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart_static -ldl -lrt -lpthread -lstdc++
endif

# MPI=1: ./seal compiled by mpicc (Open MPI or MPICH) with -DSEAL_MPI: under
# `mpirun -n K` the ranks share each E-step (ranks.c). Without it ./seal needs
# no MPI library. `make test` checks the MPI build as build/seal-mpi (CPU
# only) whenever mpicc is installed.
MPI     ?= 0
MPICC   ?= mpicc
ifeq ($(MPI),1)
SEAL_CC := $(MPICC)
MPI_DEF := -DSEAL_MPI
else
SEAL_CC := $(CC)
endif

all: seal

# The command line that builds ./seal, kept in build/seal.cmd: another MPI,
# CUDA or CFLAGS choice rebuilds it instead of leaving the old binary.
SEAL_CMD := $(SEAL_CC) $(CFLAGS) $(VFLAGS) $(CUDA_DEF) $(MPI_DEF)
build/seal.cmd: FORCE
	@mkdir -p build
	@echo '$(SEAL_CMD)' | cmp -s - $@ || echo '$(SEAL_CMD)' > $@

seal: seal.c $(SRC) $(wildcard *.h) $(CUDA_OBJ) build/seal.cmd
	$(SEAL_CMD) -o $@ seal.c $(SRC) $(CUDA_OBJ) $(LDLIBS) $(VLIBS) $(CUDA_LIBS)

build/seal-mpi: seal.c $(SRC) $(wildcard *.h)
	@mkdir -p build
	$(MPICC) $(CFLAGS) $(VFLAGS) -DSEAL_MPI -o $@ seal.c $(SRC) $(LDLIBS) $(VLIBS)

build/kernels.o: kernels.cu kernels_math.h kernels.h model.h util.h
	@mkdir -p build
	$(NICE) $(NVCC) $(NVFLAGS) -DSEAL_CUDA -DSEAL_CUDA_LIB='"$(CUDA_HOME)/lib64"' -c -o $@ kernels.cu

build/test-blas: $(SRC) $(TEST_SRC) $(wildcard *.h test/*.h)
	@mkdir -p build
	$(CC) $(CFLAGS) -DUSE_BLAS -o $@ $(SRC) $(TEST_SRC) $(LDLIBS) -lopenblas $(shell pkg-config --libs check)

build/test-ref: $(SRC) $(TEST_SRC) $(wildcard *.h test/*.h)
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $(SRC) $(TEST_SRC) $(LDLIBS) $(shell pkg-config --libs check)

# The everyday suite, about 5 minutes on 2 cores (`./setup test` installs
# what it needs first): the Check suite on both matmul paths, the command
# line, a kill-and-resume, the MPI identity check.
test: seal build/test-blas build/test-ref
	@echo "== Check suite, OpenBLAS matmuls" && ./build/test-blas
	@echo "== Check suite, reference-loop matmuls" && ./build/test-ref
	@echo "== command line: seal demo --quick, run directories, bad input" && test/cli.sh
	@echo "== every numeric flag out of range, and unwritable outputs: exit 1, the flag named, the run untouched" && test/bad_flags.sh
	@echo "== 441 bad input files and run directories: exit 1, the file named, the run kept" && SEAL=./seal test/bad_inputs.sh
	@echo "== seal fewshot killed with SIGKILL and resumed, against an uninterrupted run; a second writer; a changed input" && test/kill_resume.sh
	@echo "== data/fetch.sh from the ../shared/data mirror: every file verified, a bad file named, a repair" && test/data_fetch.sh
	@if command -v $(MPICC) >/dev/null; then echo "== mpirun -n 1, 2, 3: the same run directories as ./seal; a rank killed, resumed" && \
	    $(MAKE) --no-print-directory build/seal-mpi && test/mpi.sh build/seal-mpi; \
	 else echo "== MPI skipped: $(MPICC) is not installed (./setup test installs it)"; fi

# The slow hardening: a full disk and a read-only run directory, the Check
# suite under ASan + UBSan, every reader fuzzed, the demo under valgrind, the
# CUDA code on the CPU emulator, bench_arc beside its Hugging Face peer (when
# HF_PYTHON has torch, transformers and peft). `make check` is test and slow;
# CI runs both.
slow:
	@echo "== a full disk and a read-only run directory: a clear error, the run kept" && test/disk_errors.sh
	@echo "== the same bad inputs under ASan + UBSan: no sanitizer report" && \
	    $(MAKE) --no-print-directory build/seal-asan && test/bad_inputs.sh
	@echo "== the Check suite under AddressSanitizer + UndefinedBehaviorSanitizer" && $(MAKE) --no-print-directory test-asan
	@if command -v $(FUZZ_CC) >/dev/null; then echo "== every reader fuzzed 10 s after its regression inputs" && $(MAKE) --no-print-directory fuzz-ci; \
	 else echo "== fuzzing skipped: $(FUZZ_CC) is not installed (./setup check installs it)"; fi
	@echo "== seal demo --quick under valgrind memcheck" && $(MAKE) --no-print-directory valgrind
	@echo "== the CUDA backend on the CPU emulator" && $(MAKE) --no-print-directory test-cuda-emu
	@if $(HF_PYTHON) -c 'import torch, transformers, peft, safetensors' 2> /dev/null; then \
	    echo "== bench_arc beside its Hugging Face peer on a tiny model: the same losses and answers" && $(MAKE) --no-print-directory test-bench-arc; \
	 else echo "== bench_arc beside its Hugging Face peer skipped: $(HF_PYTHON) has no torch, transformers, peft and safetensors (set HF_PYTHON)"; fi

check: test slow

# Build, then SEAL end to end on the built-in world (`./setup demo` installs
# the build packages first).
demo: seal
	./seal demo

# The Check suite under AddressSanitizer + UndefinedBehaviorSanitizer (gcc,
# reference-loop matmuls; OpenBLAS is not instrumented), and a short
# `seal demo --quick` under valgrind memcheck (test/valgrind.sh).
SAN_FLAGS := -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
build/test-asan: $(SRC) $(TEST_SRC) $(wildcard *.h test/*.h)
	@mkdir -p build
	$(CC) $(CFLAGS) $(SAN_FLAGS) -o $@ $(SRC) $(TEST_SRC) $(LDLIBS) $(shell pkg-config --libs check)

# ./seal itself under the same sanitizers (CPU only, reference-loop matmuls):
# test/bad_inputs.sh runs its corpus of broken files and run directories on it.
build/seal-asan: seal.c $(SRC) $(wildcard *.h)
	@mkdir -p build
	$(CC) $(CFLAGS) $(SAN_FLAGS) -o $@ seal.c $(SRC) $(LDLIBS)

test-asan: build/test-asan
	ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    CK_TIMEOUT_MULTIPLIER=10 ./build/test-asan

# No -march=native: valgrind does not know every instruction of every CPU.
build/seal-valgrind: seal.c $(SRC) $(wildcard *.h)
	@mkdir -p build
	$(CC) -g -O2 -D_GNU_SOURCE -std=c11 -Wall -Wextra -fopenmp -I. -o $@ seal.c $(SRC) $(LDLIBS)

valgrind: build/seal-valgrind
	test/valgrind.sh build/seal-valgrind

# Fuzzing: one libFuzzer binary per reader (test/fuzz/fuzz_NAME.c), built
# with clang, AddressSanitizer and UndefinedBehaviorSanitizer over objects of
# SRC compiled once. `make fuzz FUZZ_SECONDS=N` fuzzes each for N seconds;
# `make fuzz-ci` replays test/fuzz/regress/ and fuzzes each for 10 seconds.
FUZZ_TARGETS := safetensors config tokenizer selfedit jsonline arc_task rundir checkpoint passages
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_CFLAGS  := -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
                -D_GNU_SOURCE -std=c11 -Wall -Wextra -Wno-unknown-pragmas -I.
FUZZ_OBJ     := $(patsubst %.c,build/fuzz/obj/%.o,$(SRC))

build/fuzz/obj/%.o: %.c $(wildcard *.h)
	@mkdir -p build/fuzz/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/%: test/fuzz/fuzz_%.c $(wildcard test/fuzz/*.h) $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Itest/fuzz -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) $(LDLIBS)

build/fuzz-seeds: test/fuzz/seeds.c $(wildcard test/fuzz/*.h) $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Itest/fuzz -o $@ $< $(FUZZ_OBJ) $(LDLIBS)

# Seeds written by the project itself (and test/fixtures), into build/fuzz-corpus/.
fuzz-corpus: build/fuzz-seeds
	./build/fuzz-seeds build/fuzz-corpus test/fixtures

fuzz: $(addprefix build/fuzz/,$(FUZZ_TARGETS)) fuzz-corpus
	@for t in $(FUZZ_TARGETS); do test/fuzz/run.sh $$t $(FUZZ_SECONDS) || exit 1; done

fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

# CPU benchmarks beside PyTorch: bench/run.sh prints the table and writes
# bench-results.json. Always the OpenBLAS build.
build/bench_train: bench/bench_train.c $(SRC) $(wildcard *.h)
	@mkdir -p build
	$(CC) $(CFLAGS) -DUSE_BLAS -o $@ bench/bench_train.c $(SRC) $(LDLIBS) -lopenblas
build/bench_train: bench/bench_models.h

build/bench_infer: bench/bench_infer.c bench/bench_models.h $(SRC) $(wildcard *.h)
	@mkdir -p build
	$(CC) $(CFLAGS) -DUSE_BLAS -o $@ bench/bench_infer.c $(SRC) $(LDLIBS) -lopenblas

# What --constrain costs in the sampling loop (see bench/bench_constrain.c).
build/bench_constrain: bench/bench_constrain.c $(SRC) $(wildcard *.h)
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ bench/bench_constrain.c $(SRC) $(LDLIBS)

# The demo's directives, one self-edit at a time (see bench/demo_directives.c).
build/demo_directives: bench/demo_directives.c $(SRC) $(wildcard *.h)
	@mkdir -p build
	$(CC) $(CFLAGS) -DUSE_BLAS -o $@ bench/demo_directives.c $(SRC) $(LDLIBS) -lopenblas

bench: build/bench_train build/bench_infer
	PYTHON=$(PYTHON) bench/run.sh build/bench_train bench-results.json

# GPU: CPU and CUDA side by side (test/gpu_check.sh: every fixture through
# `seal verify --backend cuda`, test/gpu_compare on a Llama-3.2-1B shape,
# then bench-gpu), and the GPU benchmarks beside Hugging Face transformers +
# peft (bench/run_gpu.sh). Both need nvcc and a GPU.
build/gpu_compare: test/gpu_compare.c bench/bench_models.h $(SRC) $(wildcard *.h) build/kernels.o
	$(CC) $(CFLAGS) $(VFLAGS) -DSEAL_CUDA -o $@ test/gpu_compare.c $(SRC) build/kernels.o $(LDLIBS) $(VLIBS) $(CUDA_LIBS)

# A random model of a config's shape, saved as a Hugging Face folder (for
# timing a SEAL round at Llama-3.2-1B's size without its weights).
build/make_model: test/make_model.c bench/bench_models.h $(SRC) $(wildcard *.h)
	@mkdir -p build
	$(CC) $(CFLAGS) $(VFLAGS) -o $@ test/make_model.c $(SRC) $(LDLIBS) $(VLIBS)

build/bench_gpu: bench/bench_gpu.c bench/bench_models.h $(SRC) $(wildcard *.h) build/kernels.o
	$(CC) $(CFLAGS) $(VFLAGS) -DSEAL_CUDA -o $@ bench/bench_gpu.c $(SRC) build/kernels.o $(LDLIBS) $(VLIBS) $(CUDA_LIBS)

# One ARC self-edit evaluation (TTT, then voting), timed (bench/bench_arc.c);
# with CUDA when built with it. test-bench-arc runs it beside the Hugging Face
# peer (bench/peer_hf_arc.py) on a tiny random model on the CPU and checks
# that both do the same work: per-step losses and greedy answers equal.
build/bench_arc: bench/bench_arc.c $(SRC) $(wildcard *.h) $(CUDA_OBJ)
	@mkdir -p build
	$(CC) $(CFLAGS) $(VFLAGS) $(CUDA_DEF) -o $@ bench/bench_arc.c $(SRC) $(CUDA_OBJ) $(LDLIBS) $(VLIBS) $(CUDA_LIBS)

HF_PYTHON ?= python3
test-bench-arc: build/bench_arc build/make_model
	HF_PYTHON=$(HF_PYTHON) test/bench_arc.sh

GPU_PYTHON ?= python3
bench-gpu: build/bench_gpu build/bench_arc build/make_model
	PYTHON=$(GPU_PYTHON) bench/run_gpu.sh build/bench_gpu bench-results-gpu.json

gpu-check: seal build/gpu_compare build/bench_gpu build/bench_arc build/make_model
	PYTHON=$(GPU_PYTHON) test/gpu_check.sh

# The CUDA backend's logic without a GPU: kernels.cu compiled by the C++
# compiler against test/cuda_emu.h (its kernels run as CPU fibers), then
# test/gpu_compare on small models through every kernel path, exactly (fp32
# "bf16") and in bf16, and `seal verify --backend cuda` on every fixture
# (test/cuda_emu.sh, a few minutes).
build/kernels-emu.o: kernels.cu kernels_math.h kernels.h model.h util.h test/cuda_emu.h
	@mkdir -p build
	$(CXX) -std=c++17 -O2 -g -Wall -Wextra -Wno-unknown-pragmas -DSEAL_CUDA -DSEAL_CUDA_EMU -I. -x c++ -c -o $@ kernels.cu

build/seal-emu: seal.c $(SRC) $(wildcard *.h) build/kernels-emu.o
	$(CC) $(CFLAGS) -DUSE_BLAS -DSEAL_CUDA -o $@ seal.c $(SRC) build/kernels-emu.o $(LDLIBS) -lopenblas -lstdc++

build/gpu_compare-emu: test/gpu_compare.c bench/bench_models.h $(SRC) $(wildcard *.h) build/kernels-emu.o
	$(CC) $(CFLAGS) -DUSE_BLAS -DSEAL_CUDA -o $@ test/gpu_compare.c $(SRC) build/kernels-emu.o $(LDLIBS) -lopenblas -lstdc++

build/bench_gpu-emu: bench/bench_gpu.c bench/bench_models.h $(SRC) $(wildcard *.h) build/kernels-emu.o
	$(CC) $(CFLAGS) -DUSE_BLAS -DSEAL_CUDA -o $@ bench/bench_gpu.c $(SRC) build/kernels-emu.o $(LDLIBS) -lopenblas -lstdc++

# The same with "bf16" holding a whole float: the CUDA path must then equal
# model.c up to the order of fp32 sums.
build/kernels-emu-exact.o: kernels.cu kernels_math.h kernels.h model.h util.h test/cuda_emu.h
	@mkdir -p build
	$(CXX) -std=c++17 -O2 -g -Wall -Wextra -Wno-unknown-pragmas -DSEAL_CUDA -DSEAL_CUDA_EMU -DSEAL_EMU_EXACT -I. -x c++ -c -o $@ kernels.cu

build/gpu_compare-emu-exact: test/gpu_compare.c bench/bench_models.h $(SRC) $(wildcard *.h) build/kernels-emu-exact.o
	$(CC) $(CFLAGS) -DUSE_BLAS -DSEAL_CUDA -o $@ test/gpu_compare.c $(SRC) build/kernels-emu-exact.o $(LDLIBS) -lopenblas -lstdc++

build/seal-emu-exact: seal.c $(SRC) $(wildcard *.h) build/kernels-emu-exact.o
	$(CC) $(CFLAGS) -DUSE_BLAS -DSEAL_CUDA -o $@ seal.c $(SRC) build/kernels-emu-exact.o $(LDLIBS) -lopenblas -lstdc++

test-cuda-emu: build/seal-emu build/seal-emu-exact build/gpu_compare-emu build/gpu_compare-emu-exact build/bench_gpu-emu
	test/cuda_emu.sh

# Regenerate the committed fixtures (needs PyTorch: Debian's python3-torch).
fixtures:
	$(PYTHON) test/reference.py test/fixtures

clean:
	rm -rf seal build

.PHONY: FORCE all demo test slow check bench fixtures clean bench-gpu gpu-check test-bench-arc test-cuda-emu fuzz fuzz-ci fuzz-corpus test-asan valgrind

# The knowledge demo's inner-loop check on a cached base (docs/KNOWLEDGE.md).
build/knowledge_diag: bench/knowledge_diag.c $(SRC) $(wildcard *.h)
	@mkdir -p build
	$(CC) $(CFLAGS) -DUSE_BLAS -o $@ bench/knowledge_diag.c $(SRC) $(LDLIBS) -lopenblas
