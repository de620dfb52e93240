// Placeholder until the schedule lands.
int main() { return 0; }
