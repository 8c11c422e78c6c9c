// The tests' redis-server: the same helper the queue benchmark uses (bench/redis_server.ts).
export * from "../../bench/redis_server";
