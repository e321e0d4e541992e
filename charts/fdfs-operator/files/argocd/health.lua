-- Argo CD health of fdfs.dev FdfsCluster and StorageGroup resources, read from the
-- conditions the fdfs-operator writes. Lua 5.1, as Argo CD runs it.
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function holds(kind)
  local c = condition(kind)
  if c ~= nil and c.status == "True" then
    return c
  end
  return nil
end

local function say(status, message)
  hs.status = status
  hs.message = message
  return hs
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  return say("Progressing", "being deleted")
end
if obj.status == nil then
  return say("Progressing", "waiting for the operator's first status")
end

local paused = holds("Paused")
if paused ~= nil then
  return say("Suspended", paused.message)
end

local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and generation ~= observed then
  return say("Progressing", "the operator has not acted on generation " ..
    tostring(generation) .. " yet (status describes " .. tostring(observed) .. ")")
end

local stalled = holds("Stalled")
if stalled ~= nil then
  return say("Degraded", stalled.message)
end
local reconciling = holds("Reconciling")
if reconciling ~= nil then
  return say("Progressing", reconciling.message)
end
local degraded = holds("Degraded")
if degraded ~= nil then
  return say("Degraded", degraded.message)
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  return say("Healthy", ready.message)
end
if ready ~= nil then
  return say("Progressing", ready.message)
end
return say("Progressing", "waiting for the operator's Ready condition")
