// mpi_generate: the generate example spread over MPI ranks. Rank r of R draws the global sample indices
// [count·r/R, count·(r+1)/R); rank 0 gathers them into one grid (and raw file), bit-identical to a
// single-process `generate` with the same settings.
//
//   mpirun -np 4 ./build/examples/mpi_generate --count 80 --output digits.png --raw digits.safetensors
#include <mpi.h>

#include <limits>

#include "support/generation.hpp"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  examples::settings s;
  CLI::App app{"Generate handwritten digits over MPI ranks; rank 0 writes one grid."};
  examples::add_generation_options(app, s);
  // Every rank parses the same command line; rank 0 alone prints help or the error.
  if (const int status = examples::parse_command_line(app, argc, argv, "mpi_generate", rank == 0); status >= 0) {
    MPI_Finalize();
    return status;
  }
  int status = 0;
  try {
    const long first = static_cast<long>(s.count) * rank / ranks, last = static_cast<long>(s.count) * (rank + 1) / ranks;
    if (rank != 0) s.quiet = true;
    auto part = examples::generate_digits(s, first, last);
    // Gather every rank's samples and labels, in rank order (= global index order), on rank 0.
    const int per = part.channels * part.height * part.width, mine = static_cast<int>(part.labels.size());
    // MPI counts are int: the gathered values must fit.
    if (static_cast<long long>(s.count) * per > std::numeric_limits<int>::max())
      examples::usage_error("--count " + std::to_string(s.count) + " gives more than 2^31 - 1 values to gather; expected at most " +
                            std::to_string(std::numeric_limits<int>::max() / per) + " samples per run");
    std::vector<int> counts(ranks), offsets(ranks), value_counts(ranks), value_offsets(ranks);
    MPI_Gather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
    examples::generated all = part;
    if (rank == 0) {
      int total = 0;
      for (int r = 0; r < ranks; ++r) {
        offsets[r] = total;
        value_counts[r] = counts[r] * per;
        value_offsets[r] = total * per;
        total += counts[r];
      }
      all.labels.resize(total);
      all.samples.resize(static_cast<std::size_t>(total) * per);
      all.first = 0;
    }
    MPI_Gatherv(part.labels.data(), mine, MPI_INT, all.labels.data(), counts.data(), offsets.data(), MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Gatherv(part.samples.data(), mine * per, MPI_FLOAT, all.samples.data(), value_counts.data(), value_offsets.data(), MPI_FLOAT, 0,
                MPI_COMM_WORLD);
    double slowest = 0;
    MPI_Reduce(&part.seconds, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0) {
      all.seconds = slowest;
      examples::write_outputs(s, all);
    }
  } catch (const std::exception& e) {
    std::cerr << "mpi_generate (rank " << rank << "): " << e.what() << "\n";
    status = dynamic_cast<const examples::usage_exception*>(&e) ? examples::exit_status::usage : examples::exit_status::failure;
    MPI_Abort(MPI_COMM_WORLD, status);
  }
  MPI_Finalize();
  return status;
}
